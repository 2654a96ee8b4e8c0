//! Reusable view pieces.

pub mod panel;
pub mod time;
pub mod user_box;
