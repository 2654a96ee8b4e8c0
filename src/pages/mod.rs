//! One module per page.

pub mod audit;
pub mod login;
pub mod overview;
pub mod rollout;
