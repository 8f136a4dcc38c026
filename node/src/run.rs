//! `entente node`: wires the store, the gateway server and the API, runs until SIGINT or
//! SIGTERM, then stops them in order and closes the database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use entente_api::ApiState;
use entente_gateway::{GatewayMetrics, GatewayServer, Journal, Registry};
use entente_model::{OffsetClock, SharedClock, SystemClock};
use entente_store::Store;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::NodeConfig;
use crate::tasks::Tasks;
use crate::{keys, master_key};

/// Written to `DATA_DIR/listening.json` once the node listens, so scripts and tests that
/// asked for port 0 learn the real ports. Removed on a clean stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listening {
    pub pid: u32,
    pub member: String,
    pub gateway: SocketAddr,
    pub api: SocketAddr,
    /// libp2p peer id and listen addresses, when the node federates.
    #[serde(default)]
    pub peer_id: Option<String>,
    #[serde(default)]
    pub p2p: Vec<String>,
}

pub const LISTENING_FILE: &str = "listening.json";

/// Every table a node's database holds.
pub fn tables() -> Vec<&'static str> {
    Registry::TABLES
        .iter()
        .chain(&Journal::TABLES)
        .chain(entente_lns::tables::ALL)
        .chain(entente_delivery::tables::ALL)
        .chain(entente_agreements::book::TABLES)
        .chain(entente_ledger::store::TABLES)
        .chain(entente_ledger::usage::TABLES)
        .chain(entente_peering::gateways::TABLES)
        .copied()
        .collect()
}

pub async fn run(cfg: NodeConfig) -> Result<()> {
    let key = keys::load_node_key(&cfg.key_file())?;
    let token = keys::load_token(&cfg.token_file())?;
    let sealer = master_key::load(&cfg)?.sealer()?;
    let data_dir = cfg.data_dir();
    let test_clock = if cfg.node.test_clock {
        let offset = read_clock_offset(&data_dir.join(CLOCK_OFFSET_FILE))?;
        warn!(
            offset_secs = offset.num_seconds(),
            "test clock enabled: POST /v1/clock moves time forward"
        );
        Some(Arc::new(OffsetClock::new(offset)))
    } else {
        None
    };
    let clock: SharedClock = match &test_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };

    keys::private_dir(&data_dir)?;
    let store_dir = data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_sealed(&store_dir, &tables(), sealer))
        .await?
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let store = Arc::new(store);

    let registry = Arc::new(
        Registry::load(
            store.clone(),
            clock.clone(),
            cfg.node.member.clone(),
            cfg.gateway.online_window,
        )
        .context("cannot load the gateway registry")?,
    );

    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let gateway_metrics = GatewayMetrics::register(&mut metrics_registry);
    metrics_registry.register_collector(Box::new(UplinkParses));

    let (journal, journaled) =
        Journal::open(store.clone()).context("cannot read the journal of acknowledged frames")?;
    let journal = Arc::new(journal);
    let (server, frames) = GatewayServer::bind(
        &cfg.gateway,
        registry.clone(),
        gateway_metrics.clone(),
        Some(journal.clone()),
    )
    .await
    .with_context(|| {
        format!(
            "cannot bind the gateway UDP port {} (gateway.bind)",
            cfg.gateway.bind
        )
    })?;
    // Delivery workers and the federation's swarm run on tokens of their own, cancelled
    // in turn by the ordered stop.
    let delivery_stop = CancellationToken::new();
    let federation_stop = CancellationToken::new();
    let delivery = entente_delivery::Delivery::load(
        store.clone(),
        clock.clone(),
        cfg.delivery.clone(),
        delivery_stop.clone(),
    )
    .context("cannot load the delivery queues")?;
    delivery.metrics.register(&mut metrics_registry);

    // Everything is built before anything runs: the federation listens but serves no
    // peer until its handlers (the agreements, the accounts) exist.
    let built = match cfg.roster_file() {
        None => None,
        Some(path) => Some(build_federation(&cfg, &key, &clock, &registry, &server, &path).await?),
    };
    let mut lns =
        entente_lns::NetworkServer::new(store.clone(), server.clone(), cfg.lns.clone(), clock.clone())
            .context("cannot load the network server's state")?
            .with_uplink_hook(delivery.clone())
            .with_journal(journal, journaled);
    if let Some(b) = &built {
        lns = lns.with_roaming(b.peering.clone());
    }
    let lns = Arc::new(lns);
    lns.metrics.register(&mut metrics_registry);

    let fed = match built {
        None => Federated::none(),
        Some(built) => {
            let parts = Parts {
                cfg: &cfg,
                key: &key,
                store: &store,
                clock: &clock,
                lns: &lns,
            };
            federate(parts, built, federation_stop.clone(), &mut metrics_registry)?
        }
    };
    let Federated {
        peering,
        roamed,
        p2p,
        book,
        accounts,
        task: federation_task,
    } = fed;
    let listener = tokio::net::TcpListener::bind(cfg.api.bind)
        .await
        .with_context(|| format!("cannot bind the API port {} (api.bind)", cfg.api.bind))?;

    let listening = Listening {
        pid: std::process::id(),
        member: cfg.node.member.to_string(),
        gateway: server.local_addr()?,
        api: listener.local_addr()?,
        peer_id: peering.as_ref().map(|p| p.peer_id().to_string()),
        p2p,
    };
    let listening_path = data_dir.join(LISTENING_FILE);
    write_listening(&listening_path, &listening)?;
    info!(
        member = %cfg.node.member,
        public_key = %hex::encode(key.verifying_key().as_bytes()),
        gateway = %listening.gateway,
        api = %listening.api,
        gateways = registry.len(),
        "node started"
    );

    let offset_path = data_dir.join(CLOCK_OFFSET_FILE);
    let state = ApiState {
        member: cfg.node.member.clone(),
        gateways: registry.clone(),
        gateway_metrics,
        metrics: Arc::new(metrics_registry),
        operator_token: token.into(),
        lns: Some(lns.clone()),
        delivery: Some(delivery.clone()),
        peering: peering.clone(),
        agreements: book.clone(),
        accounts: accounts.clone(),
        clock: clock.clone(),
        test_clock,
        on_clock_change: Some(Arc::new(move |offset| {
            if let Err(e) = std::fs::write(&offset_path, offset.num_seconds().to_string()) {
                warn!("cannot save the test clock offset: {e}");
            }
        })),
    };
    let mut tasks = Tasks::default();
    tasks.start("delivery", {
        let delivery = delivery.clone();
        move |stop| async move {
            delivery.start();
            stop.cancelled().await;
            delivery_stop.cancel();
        }
    });
    tasks.start("lns", {
        let lns = lns.clone();
        move |stop| lns.run(frames, roamed, stop)
    });
    tasks.start("gateway", {
        let server = server.clone();
        move |stop| server.run(stop)
    });
    if let Some(handle) = federation_task {
        tasks.start("federation", move |stop| {
            supervise_federation(handle, federation_stop, stop)
        });
    }
    if let Some(b) = book.clone() {
        tasks.start("agreements", move |stop| b.run(stop));
    }
    if let Some(a) = accounts.clone() {
        tasks.start("accounts", move |stop| a.run(stop));
    }
    tasks.start("uplink-retention", {
        let lns = lns.clone();
        move |stop| lns.run_retention(stop)
    });
    tasks.start("gateway-status", {
        let registry = registry.clone();
        let every = cfg.gateway.status_flush;
        move |stop| flush_periodically(registry, every, stop)
    });
    let limits = cfg.api.limits();
    let tls = api_tls(&cfg)?;
    tasks.start("api", move |stop| async move {
        if let Err(e) = entente_api::serve(listener, state, limits, tls, stop).await {
            error!("API server ended with an error: {e}");
        }
    });

    let outcome = tasks.supervise(wait_for_signal()).await;
    match &outcome {
        Ok(()) => info!("stopping"),
        Err(failure) => error!("{failure}; stopping the node"),
    }
    tasks.stop().await;
    // Nothing runs any more: break the links the federation's handlers make between the
    // parts, so each is dropped and the database can close.
    if let Some(b) = &book {
        b.detach();
    }
    if let Some(a) = &accounts {
        a.detach();
    }
    if let Some(p) = &peering {
        p.detach();
    }
    drop(accounts);
    drop(book);
    drop(lns);
    drop(delivery);
    drop(peering);
    drop(server);
    registry.flush().context("cannot save gateway counters")?;
    drop(registry);
    let _ = std::fs::remove_file(&listening_path);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().context("cannot close the database")?,
        Err(_) => warn!("database still referenced at shutdown; it closes with the process"),
    }
    match outcome {
        Ok(()) => {
            info!("stopped cleanly");
            Ok(())
        }
        Err(failure) => Err(failure.into()),
    }
}

/// The federation's swarm task runs on its own token: stopping it is asked in turn, and
/// a swarm task that ends early (or panics) is reported as this task's end.
async fn supervise_federation(
    mut handle: tokio::task::JoinHandle<()>,
    federation_stop: CancellationToken,
    stop: CancellationToken,
) {
    let ended = tokio::select! {
        _ = stop.cancelled() => {
            federation_stop.cancel();
            (&mut handle).await
        }
        ended = &mut handle => ended,
    };
    if let Err(e) = ended
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// What the node holds when it federates.
struct Federated {
    peering: Option<Arc<entente_peering::Peering>>,
    /// Receptions of this node's frames by peers' gateways, for the network server.
    roamed: tokio::sync::mpsc::Receiver<entente_gateway::RoamedUplink>,
    p2p: Vec<String>,
    book: Option<Arc<entente_agreements::Book>>,
    accounts: Option<Arc<entente_ledger::accounts::Accounts>>,
    /// The swarm's event loop.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Federated {
    fn none() -> Federated {
        Federated {
            peering: None,
            roamed: tokio::sync::mpsc::channel(1).1,
            p2p: vec![],
            book: None,
            accounts: None,
            task: None,
        }
    }
}

/// The parts of the node the federation's agreements and accounts are built on.
struct Parts<'a> {
    cfg: &'a NodeConfig,
    key: &'a ed25519_dalek::SigningKey,
    store: &'a Arc<Store>,
    clock: &'a SharedClock,
    lns: &'a Arc<entente_lns::NetworkServer>,
}

/// The federation the roster at `path` describes, listening but not yet serving.
async fn build_federation(
    cfg: &NodeConfig,
    key: &ed25519_dalek::SigningKey,
    clock: &SharedClock,
    registry: &Arc<Registry>,
    server: &Arc<GatewayServer>,
    path: &std::path::Path,
) -> Result<entente_peering::Built> {
    let roster = entente_peering::Roster::load(path)?;
    roster
        .verify()
        .with_context(|| format!("{} is not a valid roster", path.display()))?;
    entente_peering::Peering::build(
        cfg.node.member.clone(),
        key.to_bytes(),
        roster,
        cfg.federation.clone(),
        clock.clone(),
        registry.clone(),
        server.clone(),
    )
    .await
    .with_context(|| format!("cannot join the federation of {}", path.display()))
}

/// Builds the agreements and the accounts on the federation, then starts it with them
/// as its handlers.
fn federate(
    p: Parts<'_>,
    built: entente_peering::Built,
    stop: CancellationToken,
    metrics_registry: &mut prometheus_client::registry::Registry,
) -> Result<Federated> {
    let Parts {
        cfg,
        key,
        store,
        clock,
        lns,
    } = p;
    let peering = built.peering.clone();
    peering.metrics.register(metrics_registry);
    lns.metrics.register_roaming(metrics_registry);
    let book = agreements(key, store, clock, &peering, lns)?;
    let accounts = entente_ledger::accounts::Accounts::new(
        Arc::new(entente_ledger::Ledger::new(
            cfg.node.member.clone(),
            key.clone(),
            store.clone(),
            book.keys().clone(),
        )?),
        Arc::new(entente_ledger::usage::Usage::new(store.clone())),
        book.clone(),
        Arc::new(crate::directory::LnsDirectory(lns.clone())),
        clock.clone(),
        cfg.policies_dir(),
        Some(peering.clone()),
    );
    let handlers = entente_peering::Handlers {
        policy: Some(book.policy.clone()),
        usage: Some(accounts.clone()),
        sync: vec![
            (entente_agreements::book::SYNC_CHANNEL, book.clone()),
            (entente_ledger::accounts::SYNC_CHANNEL, accounts.clone()),
        ],
        store: Some(store.clone()),
    };
    let started = built.start(handlers, stop);
    Ok(Federated {
        p2p: started.listening.iter().map(|a| a.to_string()).collect(),
        peering: Some(started.peering),
        roamed: started.roamed,
        book: Some(book),
        accounts: Some(accounts),
        task: Some(started.task),
    })
}

/// The agreements this member is party to: loaded from the store, enforced on every
/// roamed frame through the federation's policy, replicated with each counterparty.
fn agreements(
    key: &ed25519_dalek::SigningKey,
    store: &Arc<Store>,
    clock: &SharedClock,
    peering: &Arc<entente_peering::Peering>,
    lns: &Arc<entente_lns::NetworkServer>,
) -> Result<Arc<entente_agreements::Book>> {
    let roster = peering.roster().clone();
    let book = entente_agreements::Book::load(
        peering.me().clone(),
        key.clone(),
        store.clone(),
        clock.clone(),
        Arc::new(move |m: &entente_model::MemberId| roster.member(m).map(|m| m.public_key)),
        entente_agreements::book::Links {
            peering: Some(peering.clone()),
            resolver: Some({
                let l = lns.clone();
                Arc::new(move |addr| l.devices_at(addr).unwrap_or_default())
            }),
            seen: Some({
                let l = lns.clone();
                Arc::new(move |eui| l.session(eui).ok().flatten().and_then(|s| s.last_seen))
            }),
        },
    )
    .context("cannot load the agreements")?;
    Ok(book)
}

/// `entente_uplink_parses_total`: uplink PHYPayloads this process parsed. Each reception
/// is parsed once where it enters the node (a gateway, or a peer's forward) and every
/// later step reads the parsed value; the end-to-end tests hold the node to that.
#[derive(Debug)]
struct UplinkParses;

impl prometheus_client::collector::Collector for UplinkParses {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let parses = prometheus_client::metrics::counter::ConstCounter::new(entente_frame::uplink_parses());
        let metric = encoder.encode_descriptor(
            "entente_uplink_parses",
            "Uplink PHYPayloads parsed by this process",
            None,
            parses.metric_type(),
        )?;
        parses.encode(metric)
    }
}

/// The test clock's offset survives a restart, so a test's "48 h later" stays later.
const CLOCK_OFFSET_FILE: &str = "test-clock-offset";

fn read_clock_offset(path: &std::path::Path) -> Result<chrono::TimeDelta> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .with_context(|| format!("{}: not a number of seconds", path.display()))?;
            chrono::TimeDelta::try_seconds(secs)
                .with_context(|| format!("{}: {secs} seconds is out of range", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(chrono::TimeDelta::zero()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_listening(path: &PathBuf, l: &Listening) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(l)?)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn flush_periodically(registry: Arc<Registry>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = registry.clone();
        match tokio::task::spawn_blocking(move || r.flush()).await {
            Ok(Err(e)) => warn!("cannot save gateway counters: {e}"),
            Err(e) => warn!("gateway counter flush failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            warn!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The API's TLS configuration, when node.toml names a certificate and key; the key must
/// be readable by the node's user only.
fn api_tls(cfg: &NodeConfig) -> Result<Option<entente_api::TlsConfig>> {
    let (Some(cert), Some(key)) = (&cfg.api.tls_cert, &cfg.api.tls_key) else {
        return Ok(None);
    };
    let (cert, key) = (cfg.resolve(cert), cfg.resolve(key));
    crate::keys::refuse_if_readable_by_others(&key)?;
    let tls = entente_api::tls_config(&cert, &key).map_err(|e| anyhow::anyhow!("api TLS: {e}"))?;
    Ok(Some(tls))
}
