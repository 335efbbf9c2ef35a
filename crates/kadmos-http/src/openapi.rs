//! The OpenAPI 3.1 description of the gateway, served at `/openapi.json`. OpenAPI has no place
//! for methods outside HTTP's standard set, so OpenDHT's `SUBSCRIBE`, `UNSUBSCRIBE`, `LISTEN`
//! and `STATS` are listed under the extension `x-other-methods` of their path. A test checks
//! this document against the router's table, path for path and method for method. The routes
//! of a daemon (`/daemon/...`, `/metrics`, `/ui/`) are described from their own table; those
//! that steer the node ask for the control token (`daemonToken`).

use serde_json::{json, Map, Value as Json};

use crate::daemon_api::{DaemonRoute, DAEMON_ROUTES};
use crate::router::ROUTES;

/// What each route does, for the document (routes are listed in [`ROUTES`]).
fn describe(template: &str, method: &str) -> Json {
    let key = json!({"name": "h", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "40 hex digits, or any text: the key is then the SHA-1 of the raw (percent-encoded) segment"});
    let hex40 = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"}});
    let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ndjson_values = json!({"description": "values, one JSON object per line, streamed (SSE with Accept: text/event-stream on listen)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Value"}}, "text/event-stream": {}}});
    let payload = json!({"application/pkarr.org/relays#payload": {"schema": {"type": "string", "contentEncoding": "binary",
        "description": "signature (64 bytes) ‖ seq (8 bytes, big-endian) ‖ value (at most 1000 bytes)"}}});
    let (summary, parameters, body, answer): (&str, Vec<Json>, Option<Json>, Json) = match (template, method) {
        ("/" | "/node/info", "get") => (
            "OpenDHT node info, live",
            vec![],
            None,
            json!({"description": "node info", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeInfo"}}}}),
        ),
        ("/" | "/node/stats", _) => {
            ("Gateway statistics (OpenDHT's ServerStats fields)", vec![], None, json!({"description": "stats"}))
        }
        ("/healthz", _) => ("Liveness", vec![], None, json!({"description": "the gateway runs"})),
        ("/readyz", _) => (
            "Readiness: every served node has a good contact (503 otherwise)",
            vec![],
            None,
            json!({"description": "ready"}),
        ),
        ("/openapi.json", _) => ("This document", vec![], None, json!({"description": "OpenAPI 3.1"})),
        ("/ws", _) => (
            "WebSocket: {\"listen\": KEY} / {\"unlisten\": KEY}; answers {\"key\", \"value\"} per change",
            vec![],
            None,
            json!({"description": "101 Switching Protocols"}),
        ),
        ("/key/{h}" | "/{h}", "get") => {
            ("Values at a key, streamed as the lookup finds them", vec![key], None, ndjson_values)
        }
        ("/key/{h}" | "/{h}", "post") => (
            "Put a value; answered after the put with the value as stored",
            vec![key],
            Some(
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Value"}}}}),
            ),
            json!({"description": "the value as stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Value"}}}}),
        ),
        ("/key/{h}/listen", _) => {
            ("Values at a key now, then every change; never ends", vec![key], None, ndjson_values)
        }
        ("/key/{h}/options", _) => {
            ("CORS headers of the key routes", vec![key], None, json!({"description": "headers only"}))
        }
        ("/mainline/peers/{infohash}", _) => (
            "Peers of a torrent, streamed as found",
            vec![hex40("infohash")],
            None,
            json!({"description": "{\"peer\", \"from\"} lines, or SSE `peer` events"}),
        ),
        ("/mainline/announce/{infohash}", _) => (
            "Announce a peer ({\"port\": N}, or empty for the node's port)",
            vec![hex40("infohash")],
            Some(
                json!({"content": {"application/json": {"schema": {"type": "object", "properties": {"port": {"type": "integer"}}}}}}),
            ),
            json!({"description": "{\"stored\": n}"}),
        ),
        ("/mainline/immutable", _) => (
            "Store a BEP 44 immutable item (bytes, or bencode with Content-Type application/x-bencode)",
            vec![],
            Some(json!({"required": true, "content": {"application/octet-stream": {}, "application/x-bencode": {}}})),
            json!({"description": "{\"target\", \"stored\"}"}),
        ),
        ("/mainline/immutable/{target}", _) => (
            "A BEP 44 immutable item's bencoded value",
            vec![hex40("target")],
            None,
            json!({"description": "the value", "content": {"application/x-bencode": {}}}),
        ),
        ("/mainline/mutable/{public_key}" | "/pkarr/{key}", "get") => (
            "The newest version of a mutable item, in pkarr's relay form",
            vec![],
            None,
            json!({"description": "the item", "content": payload}),
        ),
        ("/mainline/mutable/{public_key}" | "/pkarr/{key}", _) => (
            "Store a mutable item signed by the client (If-Match: expected seq)",
            vec![],
            Some(json!({"required": true, "content": payload})),
            json!({"description": "stored (204)"}),
        ),
        _ => ("", vec![], None, json!({"description": "ok"})),
    };
    let mut parameters = parameters;
    match template {
        "/mainline/mutable/{public_key}" => {
            parameters.push(json!({"name": "public_key", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}));
            parameters.push(json!({"name": "salt", "in": "query", "schema": {"type": "string", "pattern": "^([0-9a-fA-F]{2}){0,64}$"}}));
        }
        "/pkarr/{key}" => parameters.push(json!({"name": "key", "in": "path", "required": true,
            "schema": {"type": "string", "pattern": "^[ybndrfg8ejkmcpqxot1uwisza345h769]{52}$"}, "description": "z-base-32 ed25519 public key"})),
        _ => {}
    }
    let status = if answer["description"] == "stored (204)" { "204" } else { "200" };
    let mut operation = json!({"summary": summary, "parameters": parameters,
        "responses": {status: answer, "default": error}});
    if let Some(body) = body {
        operation["requestBody"] = body;
    }
    operation
}

/// What a daemon route does, for the document (routes are listed in [`DAEMON_ROUTES`]).
fn describe_daemon(route: &DaemonRoute) -> Json {
    let segment = |name: &str, description: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "description": description});
    let infohash = segment("infohash", "40 hex digits");
    let port = json!({"name": "port", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 65535},
        "description": "the port to announce; absent or 0: the daemon's own"});
    let ndjson = |what: &str| json!({"description": what, "content": {"application/x-ndjson": {}}});
    let object =
        |what: &str| json!({"description": what, "content": {"application/json": {"schema": {"type": "object"}}}});
    let (summary, parameters, answer): (&str, Vec<Json>, Json) = match route.template {
        "/daemon/stats" => ("Both nodes' counters and sizes, the advertisements and watches, the gateway's requests", vec![], object("stats")),
        "/daemon/routing-table" => ("Both nodes' routing tables: buckets, contacts (status, last answer, round-trip time), replacement caches", vec![], object("tables")),
        "/daemon/history" => ("The last hour sampled every 10 s: traffic, contacts, stores, lookups", vec![], json!({"description": "samples", "content": {"application/json": {"schema": {"type": "array"}}}})),
        "/daemon/stop" => ("Save the state and exit", vec![], json!({"description": "stopping (202)"})),
        "/daemon/mainline/peers/{infohash}" => ("Peers of a torrent, one PeerBatch per line as the lookup finds them", vec![infohash], ndjson("peer batches")),
        "/daemon/mainline/announce/{infohash}" => ("Announce the daemon (or ?port) as a peer of a torrent", vec![infohash, port], object("{\"result\", \"port\"}")),
        "/daemon/mainline/find-node/{id}" => ("The nodes closest to an ID", vec![segment("id", "40 hex digits")], object("nodes")),
        "/daemon/mainline/ping/{addr}" => ("Ping a node", vec![segment("addr", "IP address and port")], object("{\"id\", \"addr\", \"rtt_ms\"}")),
        "/daemon/mainline/advertise/{infohash}" => ("Advertise a torrent while the connection lasts: one Renewal per line per round", vec![infohash, port], ndjson("renewals")),
        "/daemon/mainline/watch/{infohash}" if route.method == "DELETE" => (
            "Stop the daemon's watch of a torrent, kept or not",
            vec![infohash],
            object("{\"stopped\"}"),
        ),
        "/daemon/mainline/watch/{infohash}" => ("Watch a torrent while the connection lasts: one WatchEvent per line (joining the daemon's kept watch of it, if any: its known peers first)", vec![infohash], ndjson("watch events")),
        "/daemon/mainline/immutable" => ("Store the body as a BEP 44 immutable item", vec![], object("PutResult")),
        "/daemon/mainline/immutable/{target}" => ("A BEP 44 immutable item's bencoded value, in hex", vec![segment("target", "40 hex digits")], object("{\"bencoded\"}")),
        "/daemon/mainline/mutable/{public_key}" => ("The newest version of a BEP 44 mutable item", vec![segment("public_key", "64 hex digits"),
            json!({"name": "salt", "in": "query", "schema": {"type": "string"}, "description": "hex"})], object("{\"seq\", \"target\", \"bencoded\"}")),
        "/metrics" => ("Prometheus text format", vec![], json!({"description": "metrics", "content": {"text/plain": {}}})),
        "/ui" => ("Redirect to the dashboard", vec![], json!({"description": "redirect"})),
        "/ui/" => ("The dashboard", vec![], json!({"description": "page", "content": {"text/html": {}}})),
        "/ui/{file}" => ("The dashboard's scripts and styles", vec![segment("file", "a file of the page")], json!({"description": "file"})),
        _ => ("", vec![], json!({"description": "ok"})),
    };
    let status = if route.template == "/daemon/stop" { "202" } else { "200" };
    let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut operation =
        json!({"summary": summary, "parameters": parameters, "responses": {status: answer, "default": error}});
    if route.control {
        operation["security"] = json!([{"daemonToken": []}]);
    }
    operation
}

/// The document.
pub fn document() -> Json {
    let mut paths = Map::new();
    for (template, methods) in ROUTES {
        let mut item = Map::new();
        let mut others = Vec::new();
        for method in *methods {
            let lower = method.to_ascii_lowercase();
            if ["get", "post", "put", "delete", "patch", "head", "trace"].contains(&lower.as_str()) {
                item.insert(lower.clone(), describe(template, &lower));
            } else {
                others.push(Json::String(method.to_string()));
            }
        }
        item.insert(
            "options".into(),
            json!({"summary": "CORS preflight", "responses": {"200": {"description": "allowed methods and headers"}}}),
        );
        if !others.is_empty() {
            item.insert("x-other-methods".into(), Json::Array(others));
        }
        paths.insert(template.to_string(), Json::Object(item));
    }
    // The daemon's routes carry no CORS headers, so they have no OPTIONS.
    for route in DAEMON_ROUTES {
        let item = paths.entry(route.template).or_insert_with(|| Json::Object(Map::new()));
        item[route.method.to_ascii_lowercase()] = describe_daemon(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "kadmos gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A DHT node's OpenDHT and Mainline networks over HTTP, compatible with OpenDHT's proxy server."},
        "paths": paths,
        "components": {
          "securitySchemes": {"daemonToken": {"type": "http", "scheme": "bearer",
              "description": "the token in daemon.json in the daemon's data directory (control API only)"}},
          "schemas": {
            "Value": {"type": "object", "description": "OpenDHT's Value JSON", "properties": {
                "id": {"type": ["string", "integer"], "description": "decimal u64; 0 or absent: the gateway picks one"},
                "data": {"type": "string", "contentEncoding": "base64", "maxLength": 87384},
                "type": {"type": "integer", "minimum": 0, "maximum": 65535},
                "utype": {"type": "string"}, "seq": {"type": "integer"},
                "owner": {"type": "string", "description": "PEM public key (a trailing NUL is accepted)"},
                "sig": {"type": "string", "contentEncoding": "base64"},
                "to": {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"},
                "cypher": {"type": "string", "contentEncoding": "base64"},
                "prio": {"type": "integer"}, "pt": {"type": "string"},
                "expired": {"type": "boolean", "description": "listen streams only"},
                "permanent": {"description": "POST only: keep alive 24 h after the last POST", "type": ["boolean", "object"]}}},
            "NodeInfo": {"type": "object", "properties": {
                "node_id": {"type": "string"}, "public_ip": {"type": "string"}, "ops": {"type": "integer"},
                "ipv4": {"$ref": "#/components/schemas/Contacts"}, "ipv6": {"$ref": "#/components/schemas/Contacts"},
                "mainline": {"type": "object"}}},
            "Contacts": {"type": "object", "properties": {"good": {"type": "integer"}, "dubious": {"type": "integer"}}},
            "Error": {"type": "object", "required": ["err"], "properties": {"err": {"type": "string"}}}
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Route;

    /// The document describes exactly the router's paths and methods: every route of the
    /// table parses to a route answering exactly those methods, and every path of the document
    /// is in the table with those methods (standard ones as operations, others in
    /// `x-other-methods`, plus OPTIONS everywhere). The daemon's routes are documented with
    /// exactly the methods of their table, each with a summary, and those that steer the node
    /// ask for the token.
    #[test]
    fn document_matches_the_router() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let daemon_paths: std::collections::BTreeSet<&str> = DAEMON_ROUTES.iter().map(|r| r.template).collect();
        assert_eq!(paths.len(), ROUTES.len() + daemon_paths.len());
        for template in daemon_paths {
            let item = paths[template].as_object().unwrap_or_else(|| panic!("{template} is not documented"));
            let mut documented: Vec<String> = item.keys().map(|k| k.to_ascii_uppercase()).collect();
            let mut expected: Vec<String> =
                DAEMON_ROUTES.iter().filter(|r| r.template == template).map(|r| r.method.to_string()).collect();
            documented.sort();
            expected.sort();
            assert_eq!(documented, expected, "{template}");
        }
        for route in DAEMON_ROUTES {
            let operation = &paths[route.template][route.method.to_ascii_lowercase()];
            assert!(!operation["summary"].as_str().unwrap_or_default().is_empty(), "{} undescribed", route.template);
            assert_eq!(operation.get("security").is_some(), route.control, "{} token", route.template);
        }
        for (template, methods) in ROUTES {
            let sample = template
                .replace("{h}", "some-key")
                .replace("{infohash}", &"a".repeat(40))
                .replace("{target}", &"b".repeat(40))
                .replace("{public_key}", &"c".repeat(64))
                .replace("{key}", "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy");
            let route = Route::parse(&sample).unwrap_or_else(|| panic!("{template} does not route"));
            assert_eq!(route.methods(), *methods, "{template}");
            let item = paths[*template].as_object().unwrap_or_else(|| panic!("{template} is not documented"));
            let mut documented: Vec<String> = item
                .keys()
                .filter(|k| !k.starts_with("x-") && *k != "options")
                .map(|k| k.to_ascii_uppercase())
                .collect();
            if let Some(others) = item.get("x-other-methods") {
                documented.extend(others.as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()));
            }
            let mut expected: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            documented.sort();
            expected.sort();
            assert_eq!(documented, expected, "{template}");
            assert!(item.contains_key("options"), "{template}");
        }
    }
}
