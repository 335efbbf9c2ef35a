//! A thin client: put, get, listen, peers and announce through a list of gateways, for
//! programs that run no node. It probes the gateways (node info, answering with a good contact),
//! uses the fastest, remembers that choice for a day (in a file, when given one), puts a
//! deadline on every request, and fails over to another gateway on errors, timeouts and
//! gateways whose node is isolated; listens re-open on another gateway and carry on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use bytes::Bytes;
use kadmos::opendht::{ListenEvent, Value, ValueId};
use kadmos::{Id, InfoHash, MutableItem};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::{self, resolve, send, HttpResponse};
use crate::value_json;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Longest wait for a request's answer (its head, for streams). Default 30 s: a gateway's
    /// own deadline on DHT operations is 30 s.
    pub request_deadline: Duration,
    /// Longest wait for a probe's answer. Default 3 s.
    pub probe_deadline: Duration,
    /// Where to remember the chosen gateway (JSON), if anywhere.
    pub choice_file: Option<PathBuf>,
    /// How long a remembered choice is used without probing again. Default 24 h.
    pub choice_lifetime: Duration,
    /// Silence after which a listen stream is taken for dead and re-opened (kadmos gateways
    /// send a heartbeat every 15 s). Default 45 s.
    pub listen_silence: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_deadline: Duration::from_secs(30),
            probe_deadline: Duration::from_secs(3),
            choice_file: None,
            choice_lifetime: Duration::from_secs(24 * 3600),
            listen_silence: Duration::from_secs(45),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a gateway URL (http://HOST:PORT)")]
    BadUrl(String),
    #[error("no gateway given")]
    NoGateways,
    #[error("no gateway is usable (each failed, timed out or has no good contact); last: {0}")]
    NoGatewayAvailable(String),
    /// The gateway refused the request itself (4xx): another gateway would refuse it too.
    #[error("the gateway refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from {gateway}: {message}")]
    BadAnswer { gateway: String, message: String },
}

/// Why one attempt failed: the gateway (try another) or the request (stop).
enum Failure {
    Gateway(String),
    Final(ClientError),
}

struct Inner {
    urls: Vec<String>,
    /// `host:port` of each URL.
    authorities: Vec<String>,
    config: ClientConfig,
    /// The gateway in use (index into `urls`).
    current: Mutex<Option<usize>>,
}

/// A client of kadmos (or OpenDHT proxy) gateways. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn authority_of(url: &str) -> Result<String, ClientError> {
    transport::split_url(url).map(|(authority, _)| authority).map_err(|_| ClientError::BadUrl(url.to_string()))
}

fn error_message(text: &str) -> String {
    serde_json::from_str::<Json>(text.trim())
        .ok()
        .and_then(|j| j["err"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().chars().take(200).collect())
}

/// Sorts an answer: 2xx is the caller's; 4xx other than 429 is the request's fault; anything
/// else (429, 5xx) is the gateway's.
async fn check(response: HttpResponse) -> Result<HttpResponse, Failure> {
    let status = response.status.as_u16();
    if response.status.is_success() {
        return Ok(response);
    }
    let message = error_message(&response.text().await.unwrap_or_default());
    if (400..500).contains(&status) && status != 429 {
        Err(Failure::Final(ClientError::Refused { status, message }))
    } else {
        Err(Failure::Gateway(format!("answered {status}: {message}")))
    }
}

/// The remembered choice: which URL, since when.
#[derive(serde::Serialize, serde::Deserialize)]
struct Choice {
    url: String,
    chosen_at_secs: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Client {
    /// A client of these gateways (`http://HOST:PORT` URLs; a path is ignored, as OpenDHT's
    /// proxy routes sit at the root).
    pub fn new(urls: &[String], config: ClientConfig) -> Result<Client, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::NoGateways);
        }
        let authorities = urls.iter().map(|u| authority_of(u)).collect::<Result<Vec<_>, _>>()?;
        let inner = Inner { urls: urls.to_vec(), authorities, config, current: Mutex::new(None) };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The URL of the gateway in use, if one was chosen.
    pub fn current(&self) -> Option<String> {
        let current = *self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        current.map(|i| self.inner.urls[i].clone())
    }

    fn set_current(&self, index: Option<usize>) {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = index;
    }

    /// Asks a gateway for its node info: the round-trip time if its node has a good contact.
    async fn probe(&self, index: usize) -> Result<Duration, String> {
        let started = Instant::now();
        let addr = resolve(&self.inner.authorities[index]).await?;
        let response = send(addr, Method::GET, "/node/info", &[], Bytes::new(), self.inner.config.probe_deadline)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status.is_success() {
            return Err(format!("node info answered {}", response.status));
        }
        let text = tokio::time::timeout(self.inner.config.probe_deadline, response.text())
            .await
            .map_err(|_| "node info timed out".to_string())??;
        let info: Json = serde_json::from_str(text.trim()).map_err(|e| format!("node info: {e}"))?;
        let good = |family: &str| info[family]["good"].as_u64().unwrap_or(0);
        if good("ipv4") + good("ipv6") == 0 {
            return Err("its node has no good contact (isolated)".into());
        }
        Ok(started.elapsed())
    }

    fn remembered(&self) -> Option<usize> {
        let path = self.inner.config.choice_file.as_ref()?;
        let choice: Choice = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let fresh = now_secs().saturating_sub(choice.chosen_at_secs) < self.inner.config.choice_lifetime.as_secs();
        fresh.then(|| self.inner.urls.iter().position(|u| *u == choice.url)).flatten()
    }

    fn remember(&self, index: usize) {
        let Some(path) = &self.inner.config.choice_file else { return };
        let choice = Choice { url: self.inner.urls[index].clone(), chosen_at_secs: now_secs() };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(text) = serde_json::to_vec(&choice) {
            // Losing the choice only costs a probe next time.
            let _ = std::fs::write(path, text);
        }
    }

    /// The gateway to use, not among `tried`: the current one, else the remembered one, else
    /// the fastest of the others that answers a probe with a joined node.
    async fn pick(&self, tried: &HashSet<usize>) -> Result<usize, ClientError> {
        let current = *self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = current.or_else(|| self.remembered()).filter(|i| !tried.contains(i)) {
            self.set_current(Some(index));
            return Ok(index);
        }
        let candidates: Vec<usize> = (0..self.inner.urls.len()).filter(|i| !tried.contains(i)).collect();
        let probes = candidates.iter().map(|&i| async move { (i, self.probe(i).await) });
        let results = futures_util::future::join_all(probes).await;
        let mut last = String::from("every gateway was tried");
        let mut best: Option<(usize, Duration)> = None;
        for (index, result) in results {
            match result {
                Ok(rtt) if best.is_none_or(|(_, b)| rtt < b) => best = Some((index, rtt)),
                Ok(_) => {}
                Err(why) => last = format!("{}: {why}", self.inner.urls[index]),
            }
        }
        let (index, _) = best.ok_or(ClientError::NoGatewayAvailable(last))?;
        self.set_current(Some(index));
        self.remember(index);
        Ok(index)
    }

    /// Runs `op` on a gateway, failing over to the others until one answers or the request
    /// itself is refused.
    async fn with_failover<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut tried = HashSet::new();
        let mut last = String::new();
        loop {
            let index = match self.pick(&tried).await {
                Ok(index) => index,
                Err(ClientError::NoGatewayAvailable(why)) if !last.is_empty() => {
                    return Err(ClientError::NoGatewayAvailable(format!("{last}; then {why}")))
                }
                Err(e) => return Err(e),
            };
            let attempt = async {
                let addr = resolve(&self.inner.authorities[index]).await.map_err(Failure::Gateway)?;
                op(addr).await
            };
            match attempt.await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Gateway(why)) => {
                    last = format!("{}: {why}", self.inner.urls[index]);
                    tried.insert(index);
                    self.set_current(None);
                }
            }
        }
    }

    async fn request(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<HttpResponse, Failure> {
        let headers = [("content-type", "application/json"), ("accept", "*/*")];
        let response = send(addr, method, path, &headers, body, self.inner.config.request_deadline)
            .await
            .map_err(|e| Failure::Gateway(e.to_string()))?;
        check(response).await
    }

    /// The whole body, within the request deadline.
    async fn body_text(&self, response: HttpResponse) -> Result<String, Failure> {
        match tokio::time::timeout(self.inner.config.request_deadline, response.text()).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(e)) => Err(Failure::Gateway(format!("reading the answer: {e}"))),
            Err(_) => Err(Failure::Gateway("the answer did not end in time".into())),
        }
    }

    fn bad_answer(addr: SocketAddr, message: impl Into<String>) -> Failure {
        Failure::Final(ClientError::BadAnswer { gateway: addr.to_string(), message: message.into() })
    }

    /// Puts `value` at `key` (an id of 0 lets the gateway pick one); returns it as stored.
    /// `permanent`: the gateway keeps it alive until 24 h after the last put of it.
    pub async fn put(&self, key: Id, value: &Value, permanent: bool) -> Result<Value, ClientError> {
        let mut json = value_json::to_json(value, false);
        if permanent {
            json["permanent"] = Json::Bool(true);
        }
        let body = Bytes::from(json.to_string());
        let path = format!("/key/{key}");
        self.with_failover(|addr| {
            let (body, path) = (body.clone(), path.clone());
            async move {
                let response = self.request(addr, Method::POST, &path, body).await?;
                let text = self.body_text(response).await?;
                let json: Json =
                    serde_json::from_str(text.trim()).map_err(|e| Self::bad_answer(addr, e.to_string()))?;
                value_json::from_json(&json).map(|p| p.value).map_err(|e| Self::bad_answer(addr, e.to_string()))
            }
        })
        .await
    }

    /// Every value at `key` (the latest version of each).
    pub async fn get(&self, key: Id) -> Result<Vec<Value>, ClientError> {
        let path = format!("/key/{key}");
        self.with_failover(|addr| {
            let path = path.clone();
            async move {
                let response = self.request(addr, Method::GET, &path, Bytes::new()).await?;
                let text = self.body_text(response).await?;
                let mut values: Vec<Value> = Vec::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let json: Json = serde_json::from_str(line).map_err(|e| Self::bad_answer(addr, e.to_string()))?;
                    let value = value_json::from_json(&json).map_err(|e| Self::bad_answer(addr, e.to_string()))?.value;
                    match values.iter_mut().find(|v| v.id == value.id) {
                        Some(old) => *old = value,
                        None => values.push(value),
                    }
                }
                Ok(values)
            }
        })
        .await
    }

    /// Peers of a torrent that a lookup finds (each once).
    pub async fn peers(&self, info_hash: InfoHash) -> Result<Vec<SocketAddr>, ClientError> {
        let path = format!("/mainline/peers/{info_hash}");
        self.with_failover(|addr| {
            let path = path.clone();
            async move {
                let response = self.request(addr, Method::GET, &path, Bytes::new()).await?;
                let text = self.body_text(response).await?;
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|line| {
                        let json: Json =
                            serde_json::from_str(line).map_err(|e| Self::bad_answer(addr, e.to_string()))?;
                        json["peer"]
                            .as_str()
                            .and_then(|p| p.parse().ok())
                            .ok_or_else(|| Self::bad_answer(addr, format!("not a peer: {line}")))
                    })
                    .collect()
            }
        })
        .await
    }

    /// Announces a peer on `port` (`None`: the gateway node's own port); returns how many nodes
    /// stored the announce.
    pub async fn announce(&self, info_hash: InfoHash, port: Option<u16>) -> Result<usize, ClientError> {
        let path = format!("/mainline/announce/{info_hash}");
        let body = Bytes::from(match port {
            Some(port) => json!({ "port": port }).to_string(),
            None => "{}".to_string(),
        });
        self.with_failover(|addr| {
            let (path, body) = (path.clone(), body.clone());
            async move {
                let response = self.request(addr, Method::POST, &path, body).await?;
                let text = self.body_text(response).await?;
                let json: Json =
                    serde_json::from_str(text.trim()).map_err(|e| Self::bad_answer(addr, e.to_string()))?;
                json["stored"].as_u64().map(|n| n as usize).ok_or_else(|| Self::bad_answer(addr, text))
            }
        })
        .await
    }

    /// Stores a BEP 44 immutable item holding `value` (a byte string); returns its target and
    /// how many nodes stored it.
    pub async fn put_immutable(&self, value: &[u8]) -> Result<(Id, usize), ClientError> {
        let body = Bytes::copy_from_slice(value);
        self.with_failover(|addr| {
            let body = body.clone();
            async move {
                let response = self.request(addr, Method::POST, "/mainline/immutable", body).await?;
                let text = self.body_text(response).await?;
                let json: Json =
                    serde_json::from_str(text.trim()).map_err(|e| Self::bad_answer(addr, e.to_string()))?;
                let target = json["target"].as_str().and_then(|t| t.parse().ok());
                let stored = json["stored"].as_u64().unwrap_or(0) as usize;
                target.map(|t| (t, stored)).ok_or_else(|| Self::bad_answer(addr, text))
            }
        })
        .await
    }

    /// The bencoded value of the immutable item `target` (the gateway checked it against the
    /// target); `None` if no node has it.
    pub async fn get_immutable(&self, target: Id) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!("/mainline/immutable/{target}");
        self.found_bytes(&path).await
    }

    /// The newest version of a mutable item (its signature checked here); `None` if no node
    /// has it.
    pub async fn get_mutable(&self, public_key: [u8; 32], salt: &[u8]) -> Result<Option<MutableItem>, ClientError> {
        let path = format!("/mainline/mutable/{}?salt={}", hex::encode(public_key), hex::encode(salt));
        let Some(body) = self.found_bytes(&path).await? else { return Ok(None) };
        let bad = |message: String| ClientError::BadAnswer { gateway: self.current().unwrap_or_default(), message };
        let item = crate::relay_payload::to_item(public_key, salt, &body).map_err(|e| bad(e.to_string()))?;
        item.verify().map_err(|e| bad(format!("the item's signature: {e}")))?;
        Ok(Some(item))
    }

    /// Stores a mutable item signed here; `cas`: the seq it must replace (BEP 44's CAS).
    pub async fn put_mutable(&self, item: &MutableItem, cas: Option<i64>) -> Result<(), ClientError> {
        let body = crate::relay_payload::from_item(item).map(Bytes::from).ok_or_else(|| ClientError::Refused {
            status: 400,
            message: "the item's value is not a byte string".into(),
        })?;
        let path = format!("/mainline/mutable/{}?salt={}", hex::encode(item.public_key), hex::encode(&item.salt));
        let cas = cas.map(|c| c.to_string());
        self.with_failover(|addr| {
            let (path, body, cas) = (path.clone(), body.clone(), cas.clone());
            async move {
                let mut headers = vec![("content-type", "application/pkarr.org/relays#payload")];
                if let Some(cas) = &cas {
                    headers.push(("if-match", cas.as_str()));
                }
                let response = send(addr, Method::PUT, &path, &headers, body, self.inner.config.request_deadline)
                    .await
                    .map_err(|e| Failure::Gateway(e.to_string()))?;
                check(response).await.map(drop)
            }
        })
        .await
    }

    /// A GET's body, or `None` on 404.
    async fn found_bytes(&self, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let found = self
            .with_failover(|addr| async move {
                let response = self.request(addr, Method::GET, path, Bytes::new()).await?;
                match tokio::time::timeout(self.inner.config.request_deadline, response.bytes()).await {
                    Ok(Ok(bytes)) => Ok(bytes.to_vec()),
                    _ => Err(Failure::Gateway("the answer did not end in time".into())),
                }
            })
            .await;
        match found {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Listens to `key` through a gateway: the values there now, then every change. When the
    /// gateway fails (the stream ends, breaks, or stays silent too long), the listen re-opens on
    /// another gateway; values already reported are not reported again.
    pub fn listen(&self, key: Id) -> ClientListen {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(self.clone().run_listen(key, tx));
        ClientListen { rx, task }
    }

    async fn run_listen(self, key: Id, events: mpsc::UnboundedSender<ListenEvent>) {
        let path = format!("/key/{key}/listen");
        let mut known: HashMap<ValueId, Value> = HashMap::new();
        let mut tried = HashSet::new();
        while !events.is_closed() {
            let index = match self.pick(&tried).await {
                Ok(index) => index,
                Err(_) => {
                    // Every gateway failed: wait a moment, then give them all another chance.
                    tried.clear();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let stream = async {
                let addr = resolve(&self.inner.authorities[index]).await.map_err(Failure::Gateway)?;
                self.request(addr, Method::GET, &path, Bytes::new()).await
            };
            let why = match stream.await {
                Ok(mut stream) => {
                    tried.clear(); // this one worked: any may be tried again after it fails
                    self.relay(&mut stream, &mut known, &events).await
                }
                Err(Failure::Gateway(why)) => why,
                Err(Failure::Final(e)) => e.to_string(),
            };
            tracing::debug!("listen on {}: {why}; failing over", self.inner.urls[index]);
            tried.insert(index);
            self.set_current(None);
        }
    }

    /// Passes a listen stream's changes on until it fails; returns why it stopped.
    async fn relay(
        &self,
        stream: &mut HttpResponse,
        known: &mut HashMap<ValueId, Value>,
        events: &mpsc::UnboundedSender<ListenEvent>,
    ) -> String {
        loop {
            let line = match tokio::time::timeout(self.inner.config.listen_silence, stream.next_line()).await {
                Err(_) => return "the stream went silent".into(),
                Ok(None) => return "the stream ended".into(),
                Ok(Some(Err(e))) => return format!("the stream broke: {e}"),
                Ok(Some(Ok(line))) => line,
            };
            let Ok(json) = serde_json::from_str::<Json>(line.trim()) else { continue };
            if json.as_object().is_some_and(|o| o.is_empty()) {
                continue; // a heartbeat
            }
            let expired = json["expired"] == Json::Bool(true);
            let Ok(posted) = value_json::from_json(&json) else { continue };
            let value = posted.value;
            let new = if expired {
                known.remove(&value.id).is_some()
            } else {
                known.insert(value.id, value.clone()).as_ref() != Some(&value)
            };
            if new && events.send(ListenEvent { value, expired }).is_err() {
                return "the listener went away".into();
            }
        }
    }
}

/// The changes a [`Client::listen`] reports; dropping it stops the listen.
pub struct ClientListen {
    rx: mpsc::UnboundedReceiver<ListenEvent>,
    task: JoinHandle<()>,
}

impl ClientListen {
    /// The next change (`None` never happens while gateways can be retried).
    pub async fn next(&mut self) -> Option<ListenEvent> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for ClientListen {
    type Item = ListenEvent;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ListenEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for ClientListen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gateway URLs are `http://HOST[:PORT]`; anything else is refused up front.
    #[test]
    fn urls() {
        assert_eq!(authority_of("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(authority_of("http://gw.example/").unwrap(), "gw.example:80");
        assert_eq!(authority_of("http://[::1]:9/x").unwrap(), "::1:9");
        assert!(authority_of("https://x").is_err());
        assert!(authority_of("not a url").is_err());
        assert!(matches!(Client::new(&[], ClientConfig::default()), Err(ClientError::NoGateways)));
    }
}
