//! One module per page.

pub mod audit;
pub mod autopilot;
pub mod login;
pub mod overview;
pub mod reports;
pub mod rollback;
pub mod rollout;
