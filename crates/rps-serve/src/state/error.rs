//! [`ForecastError`]: why the forecasting flow (model, cache, monitoring) gave no answer. It
//! knows nothing of HTTP: `crate::error` maps each variant to a status and an
//! [`ErrorCode`](crate::error::ErrorCode) once, for the routes.

use std::sync::Arc;
use std::time::Duration;

use rps_core::CoreError;
use rps_core::time::fmt_ms;

/// Why a forecast, or a realised close, could not be served. Cheap to clone: an error for a
/// store-backed coin is cached with its (newest bar, model) and served again until either
/// changes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForecastError {
    /// No model has loaded yet (the server starts before a champion exists).
    #[error(
        "no model yet: the model source is checked every {poll:?}; GET /ready turns 200 once \
         one has loaded"
    )]
    NoModel {
        /// How often the model source is checked.
        poll: Duration,
    },

    /// A well-formed coin code that neither the model nor the store knows.
    #[error(
        "{field}: the model was not trained on '{coin}' and the store has no bars for it \
         (known: {})", known.join(", ")
    )]
    UnknownCoin {
        /// The request field that named it (`requests[1].coin`).
        field: String,
        /// The coin code.
        coin: String,
        /// The coins the model or the store knows, sorted.
        known: Vec<String>,
    },

    /// The store holds no bars for the coin.
    #[error("the store has no bars for {coin}: send them in \"bars\" or run rps-extract")]
    NoStoredBars {
        /// The coin.
        coin: String,
    },

    /// The forecast cache holds no bars for the coin.
    #[error("no bars for {coin}")]
    NoCachedBars {
        /// The coin.
        coin: String,
    },

    /// A window with no bars at all.
    #[error("no bars for {coin}")]
    EmptyWindow {
        /// The coin.
        coin: String,
    },

    /// The newest bars do not give the model a full window of consecutive usable hours.
    #[error(
        "{coin}: the newest {bars} bars up to {} are not consecutive usable hours; the model \
         needs {needs} (feature warm-up + lookback)", fmt_ms(*newest)
    )]
    InsufficientHistory {
        /// The coin.
        coin: String,
        /// How many bars were given.
        bars: usize,
        /// The newest bar's hour (ms).
        newest: i64,
        /// Bars the model needs.
        needs: usize,
    },

    /// The model refused the window.
    #[error("{reason}")]
    CannotForecast {
        /// The model's reason.
        reason: String,
    },

    /// The forecast is not a price JSON can carry (infinite or absurdly large bounds).
    #[error(
        "{coin}: the forecast from the bars up to {} is not a representable price (close \
         {last_close}): check the prices' scale", fmt_ms(*newest)
    )]
    Unrepresentable {
        /// The coin.
        coin: String,
        /// The newest bar's hour (ms).
        newest: i64,
        /// The newest bar's close.
        last_close: f64,
    },

    /// No forecast for that coin and hour is waiting for its close.
    #[error(
        "no forecast for {coin} at {} is waiting for its close (forecasts are kept for the \
         last {kept} hours served)", fmt_ms(*ts)
    )]
    NoForecast {
        /// The coin.
        coin: String,
        /// The hour (ms).
        ts: i64,
        /// How many waiting forecasts are kept.
        kept: usize,
    },

    /// The store could not be read. The cause names the store's path or endpoint: it goes to
    /// the log, never to a client.
    #[error("{what} failed: {source}")]
    Store {
        /// What was being read (`reading the bars of BTC`).
        what: String,
        /// The store's error.
        source: Arc<CoreError>,
    },

    /// A forecast could not be serialised (a bug).
    #[error("serialising a forecast: {0}")]
    Serialize(Arc<serde_json::Error>),
}
