//! Reusable view pieces.

pub mod panel;
pub mod user_box;
