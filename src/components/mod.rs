//! Reusable view pieces.

pub mod client;
pub mod live;
pub mod panel;
pub mod time;
pub mod user_box;
