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

use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;

/// Validates a coin code and checks the model or the store knows it; `field` names it in
/// the error.
fn known_coin(state: &AppState, raw: &str, field: &str) -> Result<String, ApiError> {
    let coin = validate::coin_code(raw, field)?;
    state.known_coin(&coin, field)?;
    Ok(coin)
}
