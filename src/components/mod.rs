//! Reusable view pieces.

pub mod panel;
