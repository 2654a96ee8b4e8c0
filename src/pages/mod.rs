//! One module per page.

pub mod audit;
pub mod login;
pub mod overview;
pub mod rollback;
pub mod rollout;
