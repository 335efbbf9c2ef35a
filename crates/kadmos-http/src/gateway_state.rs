//! What a gateway saves to carry over a restart: its permanent puts and its push
//! subscriptions, each with the time it has left, in one JSON file
//! (`{"permanent_puts": [...], "push_subscriptions": [...]}`), written atomically (a temporary
//! file renamed) within a second of a change. A gateway started with the file puts the values
//! again and restarts the subscriptions.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value as Json};

use crate::gateway::Shared;
use crate::push::PushSubscriptions;

/// Whether part of the state changed since it was last saved.
#[derive(Default)]
pub struct Changed(AtomicBool);

impl Changed {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it changed, and clears the mark.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Writes the state to `path` if anything changed since the last save.
pub fn save_if_changed(shared: &Shared, path: &Path) -> std::io::Result<()> {
    // Both flags are taken (no short-circuit): one file holds both.
    let changed = [shared.permanent.changed.take(), shared.push.changed.take()];
    if !changed.contains(&true) {
        return Ok(());
    }
    let state = json!({ "permanent_puts": shared.permanent.to_json(), "push_subscriptions": shared.push.to_json() });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, state.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        shared.permanent.changed.mark();
        shared.push.changed.mark();
    }
    written
}

/// Restores what [`save_if_changed`] wrote: the permanent puts are recorded and put again, the
/// push subscriptions started again. A missing file is a first start.
pub async fn restore(shared: &Arc<Shared>, path: &Path) {
    let Some(dht) = &shared.opendht else { return };
    let state: Json = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(state) => state,
            Err(e) => return tracing::warn!("{}: not the gateway's state: {e}", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return tracing::warn!("reading {}: {e}", path.display()),
    };
    let puts = shared.permanent.restore(&state["permanent_puts"]);
    tracing::info!("restoring {} permanent puts from {}", puts.len(), path.display());
    for (key, value) in puts {
        if let Err(e) = dht.put_value(key, value, true).await {
            tracing::warn!("putting restored permanent value at {key} again: {e}");
        }
    }
    let subscriptions = PushSubscriptions::restore(shared, &state["push_subscriptions"]).await;
    tracing::info!("restored {subscriptions} push subscriptions from {}", path.display());
}
