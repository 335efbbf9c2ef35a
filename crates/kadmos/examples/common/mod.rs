//! What the examples read from their command line and environment.

use std::time::Duration;

/// The nodes to join through, from `KADMOS_BOOTSTRAP` (comma-separated `host:port`), to run an
/// example against a local network such as `kadmos testnet`; `None` when it is not set, and
/// the builder keeps its default: the network's public bootstrap nodes.
pub fn bootstrap() -> Option<Vec<String>> {
    let list = std::env::var("KADMOS_BOOTSTRAP").ok()?;
    Some(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
}

/// The command-line argument at `index` (1 is the first), or `default` when it is absent.
#[allow(dead_code)] // Not every example takes arguments.
pub fn arg(index: usize, default: &str) -> String {
    std::env::args().nth(index).unwrap_or_else(|| default.to_string())
}

/// How long to run, from the argument at `index` in seconds; `None` (until Ctrl-C) when it is
/// absent.
#[allow(dead_code)] // Only the examples that run until stopped take a duration.
pub fn run_for(index: usize) -> Result<Option<Duration>, String> {
    match std::env::args().nth(index) {
        None => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(secs) => Ok(Some(Duration::from_secs(secs))),
            Err(_) => Err(format!("expected a number of seconds, got {text:?}")),
        },
    }
}
