//! HTTP handlers, one file per resource. Each handler validates its input into typed values
//! and returns `Result<Json<_>, ApiError>`; [`crate::startup`] wires them into the router.

pub mod drift;
pub mod feedback;
pub mod health;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod page;
pub mod predict;
