//! Types both sides share, and the server functions the pages call. The REST handlers in
//! `server::http` and these server functions call the same service functions in `server`.

pub mod adoption;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod check;
pub mod codec;
pub mod overview;
pub mod records;
pub mod reports;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod window;

pub use status::*;
