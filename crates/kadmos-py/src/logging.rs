//! kadmos's log (Rust's `tracing`) on stderr, switched from Python: `kadmos.enable_logging()`,
//! and OpenDHT's `enableLogging`/`disableLogging` in the drop-in. The subscriber is installed
//! once per process; switching off afterwards only mutes it (a global subscriber cannot be
//! removed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

static ENABLED: AtomicBool = AtomicBool::new(false);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Logs kadmos's events at `level` and above (`error`, `warn`, `info`, `debug`, `trace`, or a
/// `tracing` filter such as `kadmos=debug`) to stderr. The level given first stays for the
/// process; later calls switch the log back on.
#[pyfunction]
#[pyo3(signature = (level="info"))]
pub fn enable_logging(level: &str) -> PyResult<()> {
    let refused =
        |e: &dyn std::fmt::Display| PyValueError::new_err(format!("not a log level or filter: {level:?} ({e})"));
    // EnvFilter skips directives it cannot read; a bare level is checked here so that a typo is
    // an error rather than silence.
    if !level.contains('=') {
        level.parse::<tracing_subscriber::filter::LevelFilter>().map_err(|e| refused(&e))?;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| refused(&e))?;
    let installed = INSTALLED.get_or_init(|| {
        let muted = tracing_subscriber::filter::filter_fn(|_| ENABLED.load(Ordering::Relaxed));
        let layer =
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).with_filter(muted);
        tracing_subscriber::registry().with(layer).try_init().map_err(|e| e.to_string())
    });
    if let Err(e) = installed {
        return Err(PyValueError::new_err(format!("another log subscriber is installed: {e}")));
    }
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Mutes the log that `enable_logging` switched on.
#[pyfunction]
pub fn disable_logging() {
    ENABLED.store(false, Ordering::Relaxed);
}
