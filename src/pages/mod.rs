//! One module per page.

pub mod login;
pub mod overview;
