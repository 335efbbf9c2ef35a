//! `kadmos`: run a DHT node, start a local test network, or run one-shot lookups.
//!
//! Subcommands live in their own modules: `node` (the daemon), `testnet`, and `oneshot`
//! (peers, announce, find-node, ping through an ephemeral node), `quests` (advertise and
//! watch, which run until interrupted). `output` prints results
//! for humans or as JSON lines. `node`, `testnet`, `put`, `get` and `listen` take
//! `--network opendht`, handled in `opendht`.

mod daemon_file;
mod node;
mod node_limits;
mod oneshot;
mod opendht;
mod opendht_keys;
mod output;
mod quests;
mod startup_pages;
mod storage;
mod testnet;
mod via_daemon;
mod via_gateway;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kadmos::PortSpec;
use tracing_subscriber::filter::{LevelFilter, Targets};
use via_daemon::LocalDaemon;

#[derive(Parser)]
#[command(name = "kadmos", version, about = "A DHT node and client for the BitTorrent Mainline and OpenDHT networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Which DHT a command works on.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// The BitTorrent DHT (BEP 5, BEP 44).
    #[default]
    Mainline,
    /// OpenDHT (Jami's DHT, port 4222): values under keys, listen.
    Opendht,
}

/// Which node(s) `kadmos node` runs.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeNetwork {
    /// The BitTorrent DHT (BEP 5, BEP 44).
    #[default]
    Mainline,
    /// OpenDHT (Jami's DHT, port 4222).
    Opendht,
    /// Both in one process: Mainline on 6881 (or --port), OpenDHT on 4222 (or --opendht-port).
    Both,
}

/// Options every command that starts a node shares.
#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// UDP port: a number (6881), a list (6881,6882) or a range (6881-6889), tried in turn;
    /// the command fails if none is free, unless the list ends with 0 (any free port). Default:
    /// any free port; `node`: 6881-6889,0 (OpenDHT: 4222,0), the port it had before first.
    #[arg(long, value_name = "PORTS")]
    port: Option<PortSpec>,
    /// Bootstrap node HOST:PORT (repeatable). Default: the public routers (OpenDHT:
    /// bootstrap.jami.net:4222).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Do not bootstrap from anyone.
    #[arg(long, conflicts_with = "bootstrap")]
    no_bootstrap: bool,
    /// Address to bind (repeatable; IPv4 and IPv6 may be mixed). Default: all interfaces.
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// put, get, listen, peers, announce: go through this HTTP gateway instead of
    /// starting a node (repeatable: the fastest is used, the others on failure). Default:
    /// KADMOS_GATEWAY (comma-separated URLs).
    #[arg(long, value_name = "URL")]
    gateway: Vec<String>,
    /// Run an ephemeral node even when a local daemon (`kadmos node`) is running; without
    /// this, peers, announce, find-node, ping and OpenDHT put/get/listen ask the daemon.
    #[arg(long)]
    standalone: bool,
}

impl NetworkArgs {
    fn builder(&self) -> kadmos::DhtBuilder {
        let mut builder = kadmos::Dht::builder();
        for ip in &self.bind {
            builder = builder.bind(*ip);
        }
        if let Some(ports) = &self.port {
            builder = builder.ports(ports.clone());
        }
        if self.no_bootstrap {
            builder = builder.no_bootstrap();
        } else if !self.bootstrap.is_empty() {
            builder = builder.bootstrap(self.bootstrap.iter());
        }
        builder
    }

    /// The same options for an OpenDHT node (whose default port is 4222).
    fn opendht_builder(&self) -> kadmos::OpenDhtBuilder {
        let mut builder = kadmos::OpenDht::builder();
        for ip in &self.bind {
            builder = builder.bind(*ip);
        }
        if let Some(ports) = &self.port {
            builder = builder.ports(ports.clone());
        }
        if self.no_bootstrap {
            builder = builder.no_bootstrap();
        } else if !self.bootstrap.is_empty() {
            builder = builder.bootstrap(self.bootstrap.iter());
        }
        builder
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a node until interrupted (SIGINT/SIGTERM), then save its state.
    Node {
        #[command(flatten)]
        net: NetworkArgs,
        /// State file (node ID and contacts): loaded at start, saved every 5 minutes and at exit.
        /// Default: state.json in the data directory (OpenDHT: state-opendht.json).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// BEP 43 read-only mode: query but never answer. With --network opendht: client mode
        /// (other nodes keep this one out of their routing tables).
        #[arg(long)]
        read_only: bool,
        /// Node ID as 40 hex digits (overrides the saved one).
        #[arg(long, value_name = "HEX")]
        id: Option<kadmos::NodeId>,
        /// Seconds between status lines.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        stats_interval: u64,
        /// Re-put the BEP 44 items this node stores for others every hour (Mainline).
        #[arg(long)]
        republish_items: bool,
        #[command(flatten)]
        limits: node_limits::NodeLimitArgs,
        /// Advertise that this host serves INFOHASH on PORT (default: the node's UDP port),
        /// re-announced every 15 minutes (repeatable; Mainline). Saved in the state file, so
        /// a restarted node resumes its advertisements.
        #[arg(long, value_name = "INFOHASH[:PORT]", value_parser = quests::parse_advertised)]
        advertise: Vec<(kadmos::InfoHash, Option<u16>)>,
        /// Watch INFOHASH for new peers, printing each (repeatable; Mainline). Saved in the
        /// state file with the peers reported, so a restarted node resumes the watch and
        /// reports only peers new to it; `kadmos watch INFOHASH` attaches to it.
        #[arg(long, value_name = "INFOHASH")]
        watch: Vec<kadmos::InfoHash>,
        /// Which DHT: mainline, opendht, or both in one process.
        #[arg(long, value_enum, default_value_t)]
        network: NodeNetwork,
        /// With --network both: the OpenDHT node's UDP ports (default 4222, then any free port).
        #[arg(long, value_name = "PORTS")]
        opendht_port: Option<PortSpec>,
        /// With --network both: an OpenDHT bootstrap node HOST:PORT (repeatable; default
        /// bootstrap.jami.net:4222). --bootstrap is then the Mainline node's.
        #[arg(long, value_name = "HOST:PORT")]
        opendht_bootstrap: Vec<String>,
        /// Serve the HTTP gateway (OpenDHT proxy routes, Mainline and pkarr routes) on
        /// ADDR:PORT, or PORT on 127.0.0.1.
        #[arg(long, value_name = "ADDR:PORT", value_parser = node::parse_http_addr)]
        http: Option<std::net::SocketAddr>,
        /// Require `Authorization: Bearer TOKEN` on the gateway's writes.
        #[arg(long, value_name = "TOKEN", requires = "http")]
        http_token: Option<String>,
        /// Gateway: requests per second per client address (bursts of twice that), 0 for no
        /// limit. Loopback clients are exempt.
        #[arg(long, value_name = "N", default_value_t = 200.0, requires = "http")]
        http_rate: f64,
        /// Gateway: a gorush-compatible push server (http://HOST:PORT) for the Android and iOS
        /// tokens of SUBSCRIBE (UnifiedPush endpoints need none).
        #[arg(long, value_name = "URL", requires = "http")]
        push_server: Option<String>,
        /// The control API's port on 127.0.0.1 (the CLI finds it in daemon.json in the data
        /// directory). Default: any free port.
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        control_port: u16,
        /// Serve no control API (and record no daemon.json): the other commands then run
        /// their own nodes instead of asking this one, and `kadmos stop` cannot reach it.
        #[arg(long, conflicts_with = "control_port")]
        no_control: bool,
    },
    /// The running daemon's routing tables: each bucket's prefix and size, each contact's ID,
    /// address, status, last answer, and the replacement cache.
    RoutingTable {
        #[arg(long)]
        json: bool,
    },
    /// The running daemon's counters, stores and uptime.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Stops the running daemon's watch of INFOHASH, also one it keeps (`node --watch`, or
    /// resumed from its state): it is no longer saved.
    Unwatch {
        info_hash: kadmos::InfoHash,
        #[arg(long)]
        json: bool,
    },
    /// Stops the running daemon (which saves its state first).
    Stop {
        #[arg(long)]
        json: bool,
    },
    /// Start N nodes on 127.0.0.1 in this process and print the address to bootstrap from.
    Testnet {
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// UDP port of the first node (the one to bootstrap from). Default: any free port.
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        json: bool,
        /// Which DHT.
        #[arg(long, value_enum, default_value_t)]
        network: Network,
    },
    /// Find peers of a torrent, printing them as they are found.
    Peers {
        info_hash: kadmos::InfoHash,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Announce a peer of a torrent. With --port N the node binds N if it can and announces
    /// N; without it, the node's own UDP port is announced (implied_port).
    Announce {
        info_hash: kadmos::InfoHash,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Advertise a peer of a torrent until interrupted: an announce now, then one every 15
    /// minutes to the nodes closest then, printing each round. --port as for announce.
    Advertise {
        info_hash: kadmos::InfoHash,
        /// Seconds between two rounds (default 900, less up to 10% jitter).
        #[arg(long, value_name = "SECS")]
        interval: Option<u64>,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Watch a torrent for peers until interrupted: search now, then every 5 minutes,
    /// printing each peer not seen before (and peers gone for 30 minutes).
    Watch {
        info_hash: kadmos::InfoHash,
        /// Seconds between two searches (default 300, less up to 10% jitter).
        #[arg(long, value_name = "SECS")]
        interval: Option<u64>,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Find the nodes closest to an ID.
    FindNode {
        id: kadmos::NodeId,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Generate an ed25519 key for mutable items (file mode 0600); prints the public key.
    /// With --network opendht: an RSA owner key (to sign values and receive encrypted ones),
    /// its public key in FILE.pub; prints the key id.
    Keygen {
        /// Key file. Default: ed25519.key in the data directory (OpenDHT: opendht.key).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
        /// OpenDHT: RSA key size in bits (default 4096, as OpenDHT).
        #[arg(long)]
        bits: Option<usize>,
        #[arg(long)]
        json: bool,
        /// Which DHT.
        #[arg(long, value_enum, default_value_t)]
        network: Network,
    },
    /// Store a value: immutable (prints its target), or mutable with --key. With
    /// --network opendht: `put KEY VALUE` stores VALUE under KEY (text, hashed like OpenDHT's
    /// InfoHash::get, or 40 hex digits), next to the values others put there.
    Put {
        /// The value (Mainline); the key (OpenDHT).
        #[arg(value_name = "VALUE|KEY")]
        first: String,
        /// The value (OpenDHT).
        #[arg(value_name = "VALUE")]
        second: Option<String>,
        /// Key file (from `kadmos keygen`): store a mutable item signed with it.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Salt of a mutable item (lets one key hold several items).
        #[arg(long)]
        salt: Option<String>,
        /// Sequence number. Default: one more than the newest on the network.
        #[arg(long)]
        seq: Option<i64>,
        /// Refuse to replace unless the stored item has this sequence number.
        #[arg(long)]
        cas: Option<i64>,
        /// OpenDHT: the value type, which sets how long nodes keep it (0: 10 minutes, 5: 1
        /// minute, 3: 5 minutes, 4: 7 days; unknown types: 10 minutes).
        #[arg(long = "type", value_name = "N", default_value_t = 0)]
        value_type: u16,
        /// OpenDHT: keep the value on the network for at least SECS seconds. Beyond its type's
        /// lifetime the command keeps running and refreshes it until then.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// OpenDHT: sign the value with this owner key (from `kadmos keygen --network
        /// opendht`); only that key can replace it. With --value-id: replace that value
        /// (the next seq is found on the network).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
        /// OpenDHT: encrypt the value to this recipient's public key (PEM or DER, or their key
        /// file); needs --sign, whose key signs inside the encryption.
        #[arg(long, value_name = "PUBKEY", requires = "sign")]
        encrypt_to: Option<PathBuf>,
        /// OpenDHT: the value's id (hex). Default: a random one.
        #[arg(long, value_name = "HEX", value_parser = parse_value_id)]
        value_id: Option<u64>,
        /// Which DHT.
        #[arg(long, value_enum, default_value_t)]
        network: Network,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Fetch a value: immutable by TARGET, or mutable by --public-key [--salt]. With
    /// --network opendht: `get KEY` prints every value stored under KEY.
    Get {
        #[arg(value_name = "TARGET|KEY")]
        target: Option<String>,
        #[arg(long, value_name = "HEX", conflicts_with = "target")]
        public_key: Option<String>,
        #[arg(long, requires = "public_key")]
        salt: Option<String>,
        /// OpenDHT: decrypt the values encrypted to this owner key.
        #[arg(long, value_name = "KEYFILE")]
        decrypt_with: Option<PathBuf>,
        /// Which DHT.
        #[arg(long, value_enum, default_value_t)]
        network: Network,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// OpenDHT (--network opendht): print the values stored under KEY, then every new value
    /// and every expiry as they happen, until interrupted.
    Listen {
        /// Text (hashed like OpenDHT's InfoHash::get) or 40 hex digits.
        key: String,
        /// Decrypt the values encrypted to this owner key.
        #[arg(long, value_name = "KEYFILE")]
        decrypt_with: Option<PathBuf>,
        /// Which DHT.
        #[arg(long, value_enum, default_value_t)]
        network: Network,
        #[command(flatten)]
        net: NetworkArgs,
    },
    /// Ping a node and print its ID.
    Ping {
        addr: String,
        #[command(flatten)]
        net: NetworkArgs,
    },
}

/// `announce --port N`: the port to announce (none: the node's own, `implied_port`).
fn announced_port(net: &NetworkArgs) -> Option<u16> {
    net.port.as_ref().and_then(|p| p.candidates().first().copied()).filter(|p| *p != 0)
}

/// A value id as OpenDHT prints it: hexadecimal, optionally with `0x`.
fn parse_value_id(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not a value id (up to 16 hex digits)"))
}

/// Refuses `--gateway` on commands that cannot go through one (rather than ignoring it).
fn check_gateway_use(command: &Command) -> Result<(), String> {
    let (net, what) = match command {
        Command::Node { net, .. } if net.standalone => return Err("--standalone does not apply to node".into()),
        Command::Node { net, .. } => (net, "node (use --http to serve a gateway)"),
        Command::FindNode { net, .. } => (net, "find-node"),
        Command::Ping { net, .. } => (net, "ping"),
        _ => return Ok(()),
    };
    if net.gateway.is_empty() {
        Ok(())
    } else {
        Err(format!("--gateway does not apply to {what}"))
    }
}

/// The log format `--log-format` chose; set once, before any command runs.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Logs to stderr at `default` and above, or as RUST_LOG says in `target=level` directives
/// (`debug`, `kadmos=debug,warn`); a RUST_LOG it cannot read leaves the default. (A plain
/// target filter rather than tracing-subscriber's EnvFilter, whose regex engine would add to
/// the daemon's code and memory.)
fn init_logging(default: LevelFilter) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    // The builder's own level filter (INFO unless told) would hide what the targets let through.
    let logs = tracing_subscriber::fmt().with_max_level(LevelFilter::TRACE).with_writer(std::io::stderr);
    let _ = match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => logs.finish().with(filter).try_init(),
        // Flattened: `message` and the event's fields at the top level, as collectors expect.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).finish().with(filter).try_init(),
    };
}

fn main() -> ExitCode {
    // Parse errors are reported on one line, like every other failure.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message with what it lists below it (e.g. the missing
            // arguments), without its usage and help hints.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            let message = if message.is_empty() { "invalid arguments" } else { message };
            eprintln!("error: {message} (see kadmos --help)");
            return ExitCode::from(2);
        }
    };
    // One thread: a node is one task that owns its sockets, and a single-threaded runtime
    // saves the cross-thread wakeups (measured: they cost more than the protocol work).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = LOG_FORMAT.set(cli.log_format);
    if let Err(message) = check_gateway_use(&cli.command) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node {
                net,
                state,
                read_only,
                id,
                stats_interval,
                republish_items,
                network,
                opendht_port,
                opendht_bootstrap,
                http,
                http_token,
                http_rate,
                push_server,
                control_port,
                no_control,
                advertise,
                watch,
                limits,
            } => {
                init_logging(LevelFilter::INFO);
                if network == NodeNetwork::Opendht && republish_items {
                    Err("--republish-items is a Mainline (BEP 44) option".to_string())
                } else if network == NodeNetwork::Opendht && !advertise.is_empty() {
                    Err("--advertise is a Mainline option".to_string())
                } else if network == NodeNetwork::Opendht && !watch.is_empty() {
                    Err("--watch is a Mainline option".to_string())
                } else if network != NodeNetwork::Both && (opendht_port.is_some() || !opendht_bootstrap.is_empty()) {
                    Err("--opendht-port and --opendht-bootstrap go with --network both".to_string())
                } else {
                    let republish = republish_items.then(|| std::time::Duration::from_secs(60 * 60));
                    let options = node::NodeOptions {
                        net,
                        network,
                        state,
                        read_only,
                        id,
                        stats_interval,
                        republish,
                        opendht_port,
                        opendht_bootstrap,
                        http,
                        http_token,
                        http_rate,
                        push_server,
                        control: (!no_control).then_some(control_port),
                        advertise,
                        watch,
                        limits,
                    };
                    node::run(options).await
                }
            }
            Command::Testnet { nodes, port, json, network } => {
                init_logging(LevelFilter::WARN);
                match network {
                    Network::Mainline => testnet::run(nodes, port, json).await,
                    Network::Opendht => opendht::testnet(nodes, port, json).await,
                }
            }
            Command::RoutingTable { json } => {
                init_logging(LevelFilter::WARN);
                via_daemon::routing_table(json).await
            }
            Command::Stats { json } => {
                init_logging(LevelFilter::WARN);
                via_daemon::stats(json).await
            }
            Command::Stop { json } => {
                init_logging(LevelFilter::WARN);
                via_daemon::stop(json).await
            }
            Command::Unwatch { info_hash, json } => {
                init_logging(LevelFilter::WARN);
                via_daemon::unwatch(info_hash, json).await
            }
            Command::Peers { info_hash, net } => {
                init_logging(LevelFilter::WARN);
                match via_gateway::gateways(&net.gateway) {
                    urls if urls.is_empty() => match LocalDaemon::find(&net, "mainline", false).await {
                        Some(daemon) => via_daemon::peers(info_hash, &daemon, net.json).await,
                        None => oneshot::peers(info_hash, net).await,
                    },
                    urls => via_gateway::peers(info_hash, &via_gateway::client(&urls)?, net.json).await,
                }
            }
            Command::Announce { info_hash, net } => {
                init_logging(LevelFilter::WARN);
                match via_gateway::gateways(&net.gateway) {
                    urls if urls.is_empty() => match LocalDaemon::find(&net, "mainline", true).await {
                        Some(daemon) => via_daemon::announce(info_hash, announced_port(&net), &daemon, net.json).await,
                        None => oneshot::announce(info_hash, net).await,
                    },
                    urls => {
                        via_gateway::announce(info_hash, announced_port(&net), &via_gateway::client(&urls)?, net.json).await
                    }
                }
            }
            // --interval describes quests of the command's own node (the daemon has its own).
            Command::Advertise { info_hash, interval, net } => {
                init_logging(LevelFilter::WARN);
                match LocalDaemon::find(&net, "mainline", true).await.filter(|_| interval.is_none()) {
                    Some(daemon) => via_daemon::advertise(info_hash, announced_port(&net), &daemon, net.json).await,
                    None => quests::advertise(info_hash, interval, net).await,
                }
            }
            Command::Watch { info_hash, interval, net } => {
                init_logging(LevelFilter::WARN);
                match LocalDaemon::find(&net, "mainline", false).await.filter(|_| interval.is_none()) {
                    Some(daemon) => via_daemon::watch(info_hash, &daemon, net.json).await,
                    None => quests::watch(info_hash, interval, net).await,
                }
            }
            Command::FindNode { id, net } => {
                init_logging(LevelFilter::WARN);
                match LocalDaemon::find(&net, "mainline", false).await {
                    Some(daemon) => via_daemon::find_node(id, &daemon, net.json).await,
                    None => oneshot::find_node(id, net).await,
                }
            }
            Command::Keygen { out, force, bits, json, network } => {
                init_logging(LevelFilter::WARN);
                match network {
                    Network::Mainline if bits.is_some() => Err("--bits is an OpenDHT option (ed25519 keys have one size)".into()),
                    Network::Mainline => storage::keygen(out, force, json),
                    Network::Opendht => {
                        let bits = bits.unwrap_or(kadmos::opendht::crypto::DEFAULT_KEY_BITS);
                        opendht_keys::keygen(out, force, bits, json)
                    }
                }
            }
            Command::Put { first, second, key, salt, seq, cas, value_type, ttl, sign, encrypt_to, value_id, network, net } => {
                let opendht_only = ttl.is_some() || value_type != 0 || sign.is_some() || value_id.is_some();
                init_logging(LevelFilter::WARN);
                match (network, second) {
                    (Network::Mainline, Some(_)) => {
                        Err("put takes one VALUE (for put KEY VALUE, add --network opendht)".into())
                    }
                    (Network::Mainline, None) if opendht_only => {
                        Err("--type, --ttl, --sign, --encrypt-to and --value-id are OpenDHT options (add --network opendht)"
                            .into())
                    }
                    (Network::Mainline, None) => {
                        let args = storage::PutArgs { value: first, key, salt, seq, cas };
                        let immutable = args.key.is_none();
                        match via_gateway::gateways(&net.gateway) {
                            urls if urls.is_empty() => match LocalDaemon::find(&net, "mainline", false).await {
                                Some(daemon) if immutable => via_daemon::put_immutable(&args.value, &daemon, net.json).await,
                                // A signed item is signed here (the daemon does not hold the key)
                                // and put through the daemon's gateway routes.
                                Some(daemon) => via_gateway::put_item(args, &daemon.client()?, net.json).await,
                                None => storage::put(args, net).await,
                            },
                            urls => via_gateway::put_item(args, &via_gateway::client(&urls)?, net.json).await,
                        }
                    }
                    (Network::Opendht, None) => Err("put --network opendht takes KEY VALUE".into()),
                    (Network::Opendht, Some(_))
                        if key.is_some() || salt.is_some() || seq.is_some() || cas.is_some() =>
                    {
                        Err("--key, --salt, --seq and --cas are Mainline (BEP 44) options".into())
                    }
                    (Network::Opendht, Some(value)) => {
                        let args = opendht::PutArgs { key: first, value, value_type, ttl, value_id, sign, encrypt_to };
                        // --ttl and --value-id need a node of the command's own (a gateway put
                        // is fire and forget).
                        let own_node = args.ttl.is_some() || args.value_id.is_some();
                        match via_gateway::gateways(&net.gateway) {
                            urls if urls.is_empty() => match LocalDaemon::find(&net, "opendht", false).await {
                                Some(daemon) if !own_node => via_gateway::put(args, &daemon.client()?, net.json).await,
                                _ => opendht::put(args, net).await,
                            },
                            urls => via_gateway::put(args, &via_gateway::client(&urls)?, net.json).await,
                        }
                    }
                }
            }
            Command::Get { target, public_key, salt, decrypt_with, network, net } => {
                init_logging(LevelFilter::WARN);
                match network {
                    Network::Mainline if decrypt_with.is_some() => {
                        Err("--decrypt-with is an OpenDHT option (add --network opendht)".into())
                    }
                    Network::Mainline => match target.map(|t| t.parse::<kadmos::Id>()).transpose() {
                        Ok(target) => match via_gateway::gateways(&net.gateway) {
                            urls if urls.is_empty() => match LocalDaemon::find(&net, "mainline", false).await {
                                Some(daemon) => via_daemon::get(target, public_key, salt, &daemon, net.json).await,
                                None => storage::get(target, public_key, salt, net).await,
                            },
                            urls => {
                                let client = via_gateway::client(&urls)?;
                                via_gateway::get_item(target, public_key, salt, &client, net.json).await
                            }
                        },
                        Err(e) => Err(e.to_string()),
                    },
                    Network::Opendht => match (target, public_key) {
                        (Some(key), None) => match via_gateway::gateways(&net.gateway) {
                            urls if urls.is_empty() => match LocalDaemon::find(&net, "opendht", false).await {
                                Some(daemon) => via_gateway::get(key, decrypt_with, &daemon.client()?, net.json).await,
                                None => opendht::get(key, decrypt_with, net).await,
                            },
                            urls => via_gateway::get(key, decrypt_with, &via_gateway::client(&urls)?, net.json).await,
                        },
                        _ => Err("get --network opendht takes a KEY (and no --public-key)".into()),
                    },
                }
            }
            Command::Listen { key, decrypt_with, network, net } => {
                init_logging(LevelFilter::WARN);
                match network {
                    Network::Opendht => match via_gateway::gateways(&net.gateway) {
                        urls if urls.is_empty() => match LocalDaemon::find(&net, "opendht", false).await {
                            Some(daemon) => via_gateway::listen(key, decrypt_with, &daemon.client()?, net.json).await,
                            None => opendht::listen(key, decrypt_with, net).await,
                        },
                        urls => via_gateway::listen(key, decrypt_with, &via_gateway::client(&urls)?, net.json).await,
                    },
                    Network::Mainline => Err("listen is an OpenDHT command: add --network opendht".into()),
                }
            }
            Command::Ping { addr, net } => {
                init_logging(LevelFilter::WARN);
                match LocalDaemon::find(&net, "mainline", false).await {
                    Some(daemon) => via_daemon::ping(addr, &daemon, net.json).await,
                    None => oneshot::ping(addr, net).await,
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
