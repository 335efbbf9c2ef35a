//! `GET /metrics`: the nodes and the gateway in Prometheus's text exposition format (version
//! 0.0.4), written by hand: a few dozen lines here against a metrics crate and its registry.
//!
//! Every name starts with `kadmos_` and ends with its unit (`_bytes`, `_seconds`) or `_total`
//! for counters. Node figures are read from the nodes when scraped; the gateway's requests and
//! the lookups the daemon ran are counted here as they happen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::future::OptionFuture;
use kadmos::opendht::OpenDhtInfo;
use kadmos::{AdvertisementInfo, ContactStatus, Info, RoutingTableDump, WatchInfo};

use crate::daemon_api::DaemonState;
use crate::router::Route;

/// The lookups the daemon runs for its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupKind {
    GetPeers,
    Announce,
    FindNode,
    Ping,
}

impl LookupKind {
    const ALL: [LookupKind; 4] = [LookupKind::GetPeers, LookupKind::Announce, LookupKind::FindNode, LookupKind::Ping];

    fn name(self) -> &'static str {
        match self {
            LookupKind::GetPeers => "get_peers",
            LookupKind::Announce => "announce",
            LookupKind::FindNode => "find_node",
            LookupKind::Ping => "ping",
        }
    }
}

/// Upper bounds of the lookup latency histogram's buckets, in seconds (a warm lookup on a real
/// network takes about a second; a cold one several).
const LATENCY_BOUNDS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Default)]
struct LookupStats {
    /// Lookups that took at most `LATENCY_BOUNDS[i]` (cumulative when written out).
    buckets: [u64; LATENCY_BOUNDS.len()],
    count: u64,
    seconds: f64,
    /// Messages sent, over the lookups that report them.
    messages: u64,
    counted_messages: u64,
}

/// What is counted as it happens.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    lookups: Mutex<[LookupStats; 4]>,
}

impl Metrics {
    pub fn count_request(&self, route: &'static str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    pub fn record_lookup(&self, kind: LookupKind, took: Duration, messages: Option<u32>) {
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let stats = &mut lookups[kind as usize];
        let secs = took.as_secs_f64();
        if let Some(bucket) = LATENCY_BOUNDS.iter().position(|bound| secs <= *bound) {
            stats.buckets[bucket] += 1;
        }
        stats.count += 1;
        stats.seconds += secs;
        if let Some(messages) = messages {
            stats.messages += u64::from(messages);
            stats.counted_messages += 1;
        }
    }

    /// All lookups so far and their summed duration in seconds.
    pub fn lookup_totals(&self) -> (u64, f64) {
        let lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        lookups.iter().fold((0, 0.0), |(n, s), l| (n + l.count, s + l.seconds))
    }
}

/// The label of a request's route in `kadmos_gateway_requests_total`: the route's template, so
/// that keys and hashes do not make a series each.
pub(crate) fn route_label(path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix("/daemon/") {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["stats"] => "/daemon/stats",
            ["routing-table"] => "/daemon/routing-table",
            ["history"] => "/daemon/history",
            ["stop"] => "/daemon/stop",
            ["mainline", "peers", _] => "/daemon/mainline/peers/{infohash}",
            ["mainline", "announce", _] => "/daemon/mainline/announce/{infohash}",
            ["mainline", "find-node", _] => "/daemon/mainline/find-node/{id}",
            ["mainline", "ping", _] => "/daemon/mainline/ping/{addr}",
            ["mainline", "advertise", _] => "/daemon/mainline/advertise/{infohash}",
            ["mainline", "watch", _] => "/daemon/mainline/watch/{infohash}",
            ["mainline", "immutable"] => "/daemon/mainline/immutable",
            ["mainline", "immutable", _] => "/daemon/mainline/immutable/{target}",
            ["mainline", "mutable", _] => "/daemon/mainline/mutable/{public_key}",
            _ => "other",
        };
    }
    if path == "/metrics" {
        return "/metrics";
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return "/ui/";
    }
    match Route::parse(path) {
        Some(Route::Root) => "/",
        Some(Route::NodeInfo) => "/node/info",
        Some(Route::NodeStats) => "/node/stats",
        Some(Route::Healthz) => "/healthz",
        Some(Route::Readyz) => "/readyz",
        Some(Route::OpenApi) => "/openapi.json",
        Some(Route::Key { legacy: false, .. }) => "/key/{h}",
        Some(Route::Key { legacy: true, .. }) => "/{h}",
        Some(Route::Listen(_)) => "/key/{h}/listen",
        Some(Route::KeyOptions) => "/key/{h}/options",
        Some(Route::Peers(_)) => "/mainline/peers/{infohash}",
        Some(Route::Announce(_)) => "/mainline/announce/{infohash}",
        Some(Route::Immutable(_)) => "/mainline/immutable/{target}",
        Some(Route::ImmutablePost) => "/mainline/immutable",
        Some(Route::Mutable(_)) => "/mainline/mutable/{public_key}",
        Some(Route::Pkarr(_)) => "/pkarr/{key}",
        Some(Route::WebSocket) => "/ws",
        None => "other",
    }
}

/// Prometheus text format, one metric family at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family with one sample per network that has a figure.
    fn per_network(&mut self, name: &str, kind: &str, help: &str, values: &[(&str, Option<u64>)]) {
        self.family(name, kind, help);
        for (network, value) in values {
            if let Some(value) = value {
                self.sample(name, &[("network", network)], *value as f64);
            }
        }
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The nodes' figures for one scrape.
struct Snapshot {
    mainline: Option<(Info, RoutingTableDump)>,
    opendht: Option<(OpenDhtInfo, RoutingTableDump)>,
    advertisements: Option<Vec<AdvertisementInfo>>,
    watches: Option<Vec<WatchInfo>>,
}

async fn snapshot(state: &DaemonState) -> Snapshot {
    let (mainline, opendht) = (state.shared.mainline.as_ref(), state.shared.opendht.as_ref());
    let mainline =
        OptionFuture::from(mainline.map(|d| async { Some((d.info().await.ok()?, d.routing_table().await.ok()?)) }));
    let opendht =
        OptionFuture::from(opendht.map(|d| async { Some((d.info().await.ok()?, d.routing_table().await.ok()?)) }));
    let advertisements = OptionFuture::from(state.shared.mainline.as_ref().map(|d| d.advertisements()));
    let advertisements = advertisements.await.and_then(Result::ok);
    let watches = OptionFuture::from(state.shared.mainline.as_ref().map(|d| d.watches())).await.and_then(Result::ok);
    Snapshot { mainline: mainline.await.flatten(), opendht: opendht.await.flatten(), advertisements, watches }
}

pub(crate) async fn serve(State(state): State<Arc<DaemonState>>) -> Response {
    let text = render(&state, &snapshot(&state).await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn render(state: &DaemonState, snap: &Snapshot) -> String {
    let mut out = Exposition::default();
    let m = snap.mainline.as_ref().map(|(info, _)| info);
    let o = snap.opendht.as_ref().map(|(info, _)| info);
    let both =
        |f: &dyn Fn(&Info) -> u64, g: &dyn Fn(&OpenDhtInfo) -> u64| [("mainline", m.map(f)), ("opendht", o.map(g))];

    out.per_network(
        "kadmos_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        &both(&|i| i.uptime_secs, &|i| i.uptime_secs),
    );
    // Each family's samples must be one group, so datagrams and bytes are written in turn.
    let datagrams = [
        ("in", both(&|i| i.traffic.datagrams_received, &|i| i.traffic.datagrams_received)),
        ("out", both(&|i| i.traffic.datagrams_sent, &|i| i.traffic.datagrams_sent)),
    ];
    let bytes = [
        ("in", both(&|i| i.traffic.bytes_received, &|i| i.traffic.bytes_received)),
        ("out", both(&|i| i.traffic.bytes_sent, &|i| i.traffic.bytes_sent)),
    ];
    for (name, help, figures) in [
        ("kadmos_datagrams_total", "UDP datagrams, by direction.", datagrams),
        ("kadmos_traffic_bytes_total", "UDP payload bytes, by direction.", bytes),
    ] {
        out.family(name, "counter", help);
        for (direction, values) in figures {
            for (network, value) in values {
                if let Some(value) = value {
                    out.sample(name, &[("network", network), ("direction", direction)], value as f64);
                }
            }
        }
    }
    out.family("kadmos_messages_total", "counter", "DHT messages, by kind (query, response, error) and direction.");
    for (network, kind, direction, value) in [
        ("mainline", "query", "in", m.map(|i| i.traffic.queries_received)),
        ("mainline", "query", "out", m.map(|i| i.traffic.requests_sent)),
        ("mainline", "response", "in", m.map(|i| i.traffic.responses_received)),
        ("mainline", "error", "in", m.map(|i| i.traffic.errors_received)),
        ("mainline", "error", "out", m.map(|i| i.traffic.errors_sent)),
        ("opendht", "query", "in", o.map(|i| i.traffic.requests_received)),
        ("opendht", "query", "out", o.map(|i| i.traffic.requests_sent)),
        ("opendht", "response", "in", o.map(|i| i.traffic.replies_received)),
        ("opendht", "error", "in", o.map(|i| i.traffic.errors_received)),
        ("opendht", "error", "out", o.map(|i| i.traffic.errors_sent)),
    ] {
        if let Some(value) = value {
            let labels = [("network", network), ("kind", kind), ("direction", direction)];
            out.sample("kadmos_messages_total", &labels, value as f64);
        }
    }
    let methods = m.map(|i| i.traffic.by_method.as_slice()).unwrap_or_default();
    for (name, help, figure) in [
        (
            "kadmos_krpc_queries_total",
            "Mainline queries by KRPC method: received from others (in) and sent by us (out).",
            (|t: &kadmos::MethodTraffic| (t.received, t.sent)) as fn(&kadmos::MethodTraffic) -> (u64, u64),
        ),
        ("kadmos_krpc_query_bytes_total", "Bytes of those queries, by method and direction.", |t| {
            (t.bytes_received, t.bytes_sent)
        }),
    ] {
        out.family(name, "counter", help);
        for traffic in methods {
            let (received, sent) = figure(traffic);
            for (direction, value) in [("in", received), ("out", sent)] {
                let labels = [("network", "mainline"), ("method", traffic.method), ("direction", direction)];
                out.sample(name, &labels, value as f64);
            }
        }
    }
    out.family(
        "kadmos_krpc_errors_total",
        "counter",
        "Mainline error answers by code (0: codes outside BEP 5 and 44), received (in) and sent (out).",
    );
    for count in m.map(|i| i.traffic.errors_by_code.as_slice()).unwrap_or_default() {
        let code = count.code.to_string();
        for (direction, value) in [("in", count.received), ("out", count.sent)] {
            let labels = [("network", "mainline"), ("code", code.as_str()), ("direction", direction)];
            out.sample("kadmos_krpc_errors_total", &labels, value as f64);
        }
    }
    let kinds = o.map(|i| i.traffic.by_kind.as_slice()).unwrap_or_default();
    for (name, help, figure) in [
        (
            "kadmos_opendht_datagrams_total",
            "OpenDHT datagrams by message kind (request method, reply, error, value_parts) and direction.",
            (|t: &kadmos::opendht::KindTraffic| (t.received, t.sent))
                as fn(&kadmos::opendht::KindTraffic) -> (u64, u64),
        ),
        ("kadmos_opendht_bytes_total", "Bytes of those datagrams, by kind and direction.", |t| {
            (t.bytes_received, t.bytes_sent)
        }),
    ] {
        out.family(name, "counter", help);
        for traffic in kinds {
            let (received, sent) = figure(traffic);
            for (direction, value) in [("in", received), ("out", sent)] {
                let labels = [("network", "opendht"), ("kind", traffic.kind), ("direction", direction)];
                out.sample(name, &labels, value as f64);
            }
        }
    }
    out.family(
        "kadmos_opendht_errors_total",
        "counter",
        "OpenDHT error answers by code (0: codes other than 203, 401 and 404), received (in) and sent (out).",
    );
    for count in o.map(|i| i.traffic.errors_by_code.as_slice()).unwrap_or_default() {
        let code = count.code.to_string();
        for (direction, value) in [("in", count.received), ("out", count.sent)] {
            let labels = [("network", "opendht"), ("code", code.as_str()), ("direction", direction)];
            out.sample("kadmos_opendht_errors_total", &labels, value as f64);
        }
    }
    out.per_network(
        "kadmos_requests_timed_out_total",
        "counter",
        "Our requests that got no answer in time.",
        &both(&|i| i.traffic.requests_timed_out, &|i| i.traffic.requests_timed_out),
    );
    out.per_network(
        "kadmos_datagrams_dropped_total",
        "counter",
        "Datagrams ignored: undecodable, unexpected, or from another network.",
        &both(&|i| i.traffic.dropped, &|i| i.traffic.dropped),
    );
    out.per_network(
        "kadmos_requests_rate_limited_total",
        "counter",
        "Requests dropped by rate limits.",
        &both(&|i| i.traffic.queries_rate_limited, &|i| i.traffic.rate_limited),
    );
    out.family("kadmos_routing_table_contacts", "gauge", "Routing-table contacts, by family and status.");
    let tables =
        [("mainline", snap.mainline.as_ref().map(|(_, t)| t)), ("opendht", snap.opendht.as_ref().map(|(_, t)| t))];
    for (network, table) in tables {
        for family in table.iter().flat_map(|t| [t.ipv4.as_ref(), t.ipv6.as_ref()]).flatten() {
            for status in ContactStatus::ALL {
                let n = family.buckets.iter().flat_map(|b| &b.contacts).filter(|c| c.status == status).count();
                let labels = [("network", network), ("family", family.family.as_str()), ("status", status.as_str())];
                out.sample("kadmos_routing_table_contacts", &labels, n as f64);
            }
        }
    }
    out.per_network(
        "kadmos_stored_peers",
        "gauge",
        "Peers stored for announced torrents.",
        &[("mainline", m.map(|i| i.stored_peers as u64))],
    );
    out.per_network(
        "kadmos_stored_infohashes",
        "gauge",
        "Torrents with stored peers.",
        &[("mainline", m.map(|i| i.stored_infohashes as u64))],
    );
    out.per_network(
        "kadmos_stored_items",
        "gauge",
        "BEP 44 items stored for others.",
        &[("mainline", m.map(|i| i.stored_items as u64))],
    );
    out.per_network(
        "kadmos_kept_items",
        "gauge",
        "Items put through this node and kept alive.",
        &both(&|i| i.kept_items as u64, &|i| i.permanent_puts as u64),
    );
    out.per_network(
        "kadmos_stored_values",
        "gauge",
        "OpenDHT values stored.",
        &[("opendht", o.map(|i| i.stored_values as u64))],
    );
    out.per_network(
        "kadmos_stored_values_bytes",
        "gauge",
        "Bytes of OpenDHT values stored.",
        &[("opendht", o.map(|i| (i.remote_bytes + i.local_bytes) as u64))],
    );
    out.per_network(
        "kadmos_running_operations",
        "gauge",
        "Lookups and other operations in progress.",
        &both(&|i| i.running_operations as u64, &|i| i.running_operations as u64),
    );

    if let Some(advertisements) = &snap.advertisements {
        out.family("kadmos_quest_advertisements", "gauge", "Torrents the node advertises (re-announced every 15 min).");
        out.sample("kadmos_quest_advertisements", &[], advertisements.len() as f64);
        out.family("kadmos_quest_rounds_total", "counter", "Announce rounds of the current advertisements.");
        out.sample("kadmos_quest_rounds_total", &[], advertisements.iter().map(|a| a.rounds).sum::<u64>() as f64);
    }
    if let Some(watches) = &snap.watches {
        out.family("kadmos_quest_watches", "gauge", "Torrents the node watches: kept (saved) or held by clients.");
        for kept in [true, false] {
            let n = watches.iter().filter(|w| w.kept == kept).count();
            out.sample("kadmos_quest_watches", &[("kept", if kept { "true" } else { "false" })], n as f64);
        }
    }
    let lookups = state.metrics.lookups.lock().unwrap_or_else(|e| e.into_inner()).clone();
    out.family("kadmos_lookup_duration_seconds", "histogram", "Lookups the daemon ran for its clients, by kind.");
    for kind in LookupKind::ALL {
        let stats = &lookups[kind as usize];
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BOUNDS.iter().zip(stats.buckets) {
            cumulative += n;
            let le = bound.to_string();
            out.sample(
                "kadmos_lookup_duration_seconds_bucket",
                &[("kind", kind.name()), ("le", &le)],
                cumulative as f64,
            );
        }
        out.sample(
            "kadmos_lookup_duration_seconds_bucket",
            &[("kind", kind.name()), ("le", "+Inf")],
            stats.count as f64,
        );
        out.sample("kadmos_lookup_duration_seconds_sum", &[("kind", kind.name())], stats.seconds);
        out.sample("kadmos_lookup_duration_seconds_count", &[("kind", kind.name())], stats.count as f64);
    }
    out.family(
        "kadmos_lookup_messages_total",
        "counter",
        "Requests sent by the lookups that report them (announces, pings), by kind.",
    );
    for kind in LookupKind::ALL {
        out.sample("kadmos_lookup_messages_total", &[("kind", kind.name())], lookups[kind as usize].messages as f64);
    }

    out.family("kadmos_gateway_requests_total", "counter", "HTTP requests answered, by route and status.");
    let requests = state.metrics.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((route, status), n) in requests {
        out.sample("kadmos_gateway_requests_total", &[("route", route), ("status", &status.to_string())], n as f64);
    }
    let open = state.shared.stats.open_listens.load(Ordering::Relaxed);
    out.family("kadmos_gateway_listen_streams", "gauge", "Open listen streams.");
    out.sample("kadmos_gateway_listen_streams", &[], open as f64);
    out.family("kadmos_gateway_puts_total", "counter", "Values put through the gateway.");
    out.sample("kadmos_gateway_puts_total", &[], state.shared.stats.puts.load(Ordering::Relaxed) as f64);
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label values are escaped as the exposition format requires, and templates stand for
    /// paths with keys in them.
    #[test]
    fn labels() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(route_label("/key/abc/listen"), "/key/{h}/listen");
        assert_eq!(route_label("/daemon/mainline/peers/0123"), "/daemon/mainline/peers/{infohash}");
        assert_eq!(route_label("/ui/app.js"), "/ui/");
        assert_eq!(route_label("/a/b/c/d"), "other");
    }
}
