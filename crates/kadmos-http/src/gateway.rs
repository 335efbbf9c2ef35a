//! The [`Gateway`]: what it serves (an OpenDHT node, a Mainline node, or both), its settings,
//! and the HTTP server task.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kadmos::{Dht, OpenDht};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api_error::{ApiError, ApiResult};
use crate::client_limits::{ClientLimits, LimitsConfig};
use crate::daemon_api::{self, DaemonControl, DaemonState};
use crate::gateway_state;
use crate::hot_keys::HotKeys;
use crate::listen_hub::ListenHub;
use crate::node_status::ContactCache;
use crate::permanent::PermanentPuts;
use crate::push::PushSubscriptions;
use crate::router;
use crate::server;

/// How the gateway behaves. The defaults suit a public node.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Longest a DHT operation (a get, a put, a lookup) may take before the request is answered
    /// 504 (a get's stream simply ends there). Default 30 s.
    pub operation_deadline: Duration,
    /// When set, writes (POST, PUT, SUBSCRIBE, UNSUBSCRIBE) need `Authorization: Bearer <token>`.
    pub write_token: Option<String>,
    /// How long a permanent put is kept alive after its last POST. Default 24 h (OpenDHT's).
    pub permanent_lifetime: Duration,
    /// Silence after which a listen stream carries a heartbeat. Default 15 s.
    pub heartbeat: Duration,
    /// How long a finished lookup answers GETs of its key (concurrent GETs always share one
    /// lookup). Default 1 s; zero: only concurrent GETs share.
    pub get_cache_ttl: Duration,
    /// How long a key's listen must have run before it answers GETs of the key (by then it
    /// has heard from the storing nodes). Default 2 s.
    pub listen_answers_gets_after: Duration,
    /// How many keys' lookups are remembered at most (bounds the gateway's search state).
    /// Default 100,000.
    pub max_remembered_keys: usize,
    /// Per-address request rate and listen-stream cap (429 beyond).
    pub limits: LimitsConfig,
    /// A gorush-compatible push server (`http://HOST:PORT`) for Android and iOS push tokens
    /// (UnifiedPush tokens need none). Default: none (such SUBSCRIBEs answer 501).
    pub push_server: Option<String>,
    /// How long a push subscription lasts after its last SUBSCRIBE. Default 24 h.
    pub push_lifetime: Duration,
    /// Where permanent puts and push subscriptions are saved (with the time each has left),
    /// to be restored when a gateway starts with the same file. Default: nowhere.
    pub state_file: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            operation_deadline: Duration::from_secs(30),
            write_token: None,
            permanent_lifetime: Duration::from_secs(24 * 3600),
            heartbeat: Duration::from_secs(15),
            get_cache_ttl: Duration::from_secs(1),
            listen_answers_gets_after: Duration::from_secs(2),
            max_remembered_keys: 100_000,
            limits: LimitsConfig::default(),
            state_file: None,
            push_server: None,
            push_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// Counters behind `/node/stats`.
#[derive(Default)]
pub(crate) struct Stats {
    pub puts: AtomicU64,
    pub open_listens: Arc<AtomicUsize>,
    requests: AtomicU64,
    /// (start of the current 10 s window, requests counted at its start, rate of the last one)
    window: Mutex<(Option<Instant>, u64, f64)>,
}

/// Keeps a listen counted as open while it lives.
pub(crate) struct OpenListen(Arc<AtomicUsize>);

impl Drop for OpenListen {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    const WINDOW: Duration = Duration::from_secs(10);

    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn listen_opened(&self) -> OpenListen {
        self.open_listens.fetch_add(1, Ordering::Relaxed);
        OpenListen(self.open_listens.clone())
    }

    /// Requests per second over the last complete 10-second window.
    pub fn request_rate(&self) -> f64 {
        let now = Instant::now();
        let total = self.requests.load(Ordering::Relaxed);
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        match window.0 {
            None => *window = (Some(now), total, 0.0),
            Some(start) if now.duration_since(start) >= Self::WINDOW => {
                let elapsed = now.duration_since(start).as_secs_f64();
                *window = (Some(now), total, (total - window.1) as f64 / elapsed);
            }
            Some(_) => {}
        }
        window.2
    }
}

/// What every request handler reads.
pub(crate) struct Shared {
    pub opendht: Option<OpenDht>,
    pub mainline: Option<Dht>,
    pub config: GatewayConfig,
    pub permanent: PermanentPuts,
    pub hot_keys: HotKeys,
    pub listens: ListenHub,
    pub push: PushSubscriptions,
    pub limits: ClientLimits,
    pub contact_cache: ContactCache,
    pub stats: Stats,
    pub started: SystemTime,
}

impl Shared {
    pub fn opendht(&self) -> ApiResult<&OpenDht> {
        self.opendht.as_ref().ok_or_else(|| ApiError::NotFound("this gateway serves no OpenDHT node".into()))
    }

    pub fn mainline(&self) -> ApiResult<&Dht> {
        self.mainline.as_ref().ok_or_else(|| ApiError::NotFound("this gateway serves no Mainline node".into()))
    }

    /// Runs an operation under the gateway's deadline (504 past it), leaving its own result
    /// for the caller to interpret.
    pub async fn deadline<T>(&self, operation: impl Future<Output = T>) -> ApiResult<T> {
        tokio::time::timeout(self.config.operation_deadline, operation)
            .await
            .map_err(|_| ApiError::Timeout(self.config.operation_deadline.as_secs()))
    }

    /// Runs a DHT operation under the gateway's deadline; its errors are the DHT's (502).
    pub async fn within<T>(&self, operation: impl Future<Output = kadmos::Result<T>>) -> ApiResult<T> {
        match self.deadline(operation).await? {
            Err(kadmos::Error::Shutdown) => Err(ApiError::Unavailable("the node is shutting down".into())),
            Err(e) => Err(ApiError::BadGateway(e.to_string())),
            Ok(value) => Ok(value),
        }
    }
}

/// An HTTP gateway to a running OpenDHT node and/or Mainline node. Clone the node handles into
/// it; the nodes keep running when the gateway stops.
pub struct Gateway {
    shared: Arc<Shared>,
    /// Set when the gateway is a daemon's control API (see [`Gateway::with_control`]).
    control: Option<DaemonControl>,
}

/// A gateway serving on a socket; the server stops when this is dropped or
/// [`RunningGateway::stop`] is called.
pub struct RunningGateway {
    pub local_addr: SocketAddr,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl RunningGateway {
    /// Stops accepting connections, stops the push subscriptions and the upkeep. Streams
    /// already open end when their clients close them (or the node stops).
    pub fn stop(&self) {
        self.server.abort();
        self.sweeper.abort();
        // Their forwarders hold the gateway's state: dropping them lets it go.
        self.shared.push.clear();
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Gateway {
    pub fn new(opendht: Option<OpenDht>, mainline: Option<Dht>, config: GatewayConfig) -> Gateway {
        let permanent = PermanentPuts::new(config.permanent_lifetime);
        let hot_keys = HotKeys::new(config.get_cache_ttl, config.max_remembered_keys);
        let stats = Stats::default();
        let limits = ClientLimits::new(config.limits);
        let (listens, started) = (ListenHub::default(), SystemTime::now());
        let push = PushSubscriptions::new(config.push_lifetime);
        let contact_cache = ContactCache::default();
        let shared = Shared {
            opendht,
            mainline,
            config,
            permanent,
            hot_keys,
            listens,
            push,
            limits,
            contact_cache,
            stats,
            started,
        };
        Gateway { shared: Arc::new(shared), control: None }
    }

    /// Makes this gateway the control API of a daemon: the `/daemon/` control routes answer
    /// requests that carry the control's token.
    pub fn with_control(mut self, control: DaemonControl) -> Gateway {
        self.control = Some(control);
        self
    }

    /// Serves on `listener` until the returned handle is dropped.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<RunningGateway> {
        let local_addr = listener.local_addr()?;
        let daemon = DaemonState::new(self.shared.clone(), self.control);
        let app = daemon_api::around(router::router(self.shared.clone()), daemon.clone());
        let server = tokio::spawn(server::serve(listener, app, daemon.clone()));
        let shared = self.shared.clone();
        let sweeper = tokio::spawn(async move {
            let sweep = async {
                if let Some(path) = self.shared.config.state_file.clone() {
                    gateway_state::restore(&self.shared, &path).await;
                }
                sweep_permanent_puts(self.shared).await;
            };
            tokio::join!(sweep, daemon_api::sample_history(daemon));
        });
        Ok(RunningGateway { local_addr, server, sweeper, shared })
    }

    /// Binds `addr` (port 0: any free port) and serves there.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<RunningGateway> {
        self.serve(TcpListener::bind(addr).await?)
    }
}

/// Stops keeping alive the permanent puts whose clients stopped refreshing them, and forgets
/// the GET lookups that can no longer answer.
async fn sweep_permanent_puts(shared: Arc<Shared>) {
    // Every second at most: a change to the permanent puts is saved within a second.
    let every = (shared.permanent.lifetime() / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        shared.hot_keys.purge_stale();
        shared.push.sweep(&shared);
        let Some(dht) = &shared.opendht else { continue };
        for (key, value_id) in shared.permanent.take_expired(Instant::now()) {
            if let Err(e) = dht.cancel_put(key, value_id).await {
                tracing::warn!("cancelling expired permanent put {key}/{value_id}: {e}");
            }
        }
        if let Some(path) = &shared.config.state_file {
            if let Err(e) = gateway_state::save_if_changed(&shared, path) {
                tracing::warn!("saving the gateway's state to {}: {e}", path.display());
            }
        }
    }
}
