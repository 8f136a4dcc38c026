//! `entente bench ingest`: uplinks per second through the full home pipeline — UDP in,
//! Semtech parsing, dedup window, MIC, FCnt, synced RocksDB group write — with the loss
//! counted and the node's own CPU time per uplink.
//!
//! Two processes, everything real: the node (`entente bench ingest-node`, a hidden
//! subcommand: gateway server on a loopback UDP port, network server, RocksDB in a
//! temporary directory) and this one, the emulated gateways, which encodes every datagram
//! before a round, sends them with `sendmmsg` and paces itself on the PUSH_ACKs the node
//! returns. The node's CPU time is read from `/proc/<pid>/stat` (utime + stime, every
//! thread of the node process, RocksDB's background threads included) before and after
//! each round, so the sender's own cost is not counted.
//!
//! The two talk over the child's stdin/stdout: `ready <port>` once the devices are
//! provisioned, then `wait <n>` is answered with the accepted count once it reaches `n`
//! (or after 60 s), and `quit` with the node's counters as one JSON line.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use entente_gateway::json::PushData;
use entente_gateway::mmsg::{self, RecvBatch};
use entente_gateway::protocol::{self, Upstream};
use entente_gateway::{
    DatagramDrop, FrameDrop, GatewayMetrics, GatewayServer, Journal, NewGateway, Registry, ServerConfig,
};
use entente_lns::{
    AbpKeys, AesKey, Device, DeviceClass, GeolocationMode, Lifecycle, LnsConfig, MacVersion, NetworkServer,
    Profile,
};
use entente_model::{DevAddr, DevEui, GatewayEui, MemberId, SharedClock, SystemClock};
use entente_sim::{DeviceSession, SimDevice, rxpk};
use entente_store::{Sealer, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Simulated devices (ABP, LoRaWAN 1.0.3 and 1.1 alternately).
    #[arg(long, default_value_t = 50_000)]
    pub devices: usize,
    /// Uplinks per device; the first round is a warm-up (first-uplink MAC requests).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Gateways the traffic is spread over.
    #[arg(long, default_value_t = 4)]
    pub gateways: usize,
    /// PUSH_DATA datagrams sent but not yet acknowledged before the sender waits (keeps
    /// the kernel buffer from overflowing: the benchmark measures the node, not the
    /// socket buffer).
    #[arg(long, default_value_t = 4_000)]
    pub window: u64,
    /// The home dedup window (`lns.dedup_window`); every frame waits it once, so each
    /// round's time includes it.
    #[arg(long, default_value_t = 200)]
    pub dedup_window_ms: u64,
    /// Whether acknowledged frames are journaled as a node does (`off` measures what the
    /// journal costs).
    #[arg(long, value_enum, default_value_t = JournalMode::On)]
    pub journal: JournalMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalMode {
    On,
    Off,
}

impl JournalMode {
    fn as_str(self) -> &'static str {
        match self {
            JournalMode::On => "on",
            JournalMode::Off => "off",
        }
    }
}

/// The node side of the benchmark, in its own process (started by `bench ingest`).
#[derive(Debug, clap::Args)]
pub struct IngestNodeArgs {
    #[arg(long)]
    pub devices: usize,
    #[arg(long)]
    pub gateways: usize,
    #[arg(long)]
    pub dedup_window_ms: u64,
    #[arg(long, value_enum)]
    pub journal: JournalMode,
}

fn key(i: usize, salt: u8) -> AesKey {
    let mut k = [salt; 16];
    k[..8].copy_from_slice(&(i as u64).to_be_bytes());
    AesKey(k)
}

fn gateway_euis(n: usize) -> Vec<GatewayEui> {
    (0..n)
        .map(|i| GatewayEui([0, 0x80, 0, 0, 0xbe, 0, 0, i as u8]))
        .collect()
}

/// Device `i`: its identity and keys, the same on both sides of the benchmark.
struct Keys {
    v11: bool,
    eui: DevEui,
    addr: DevAddr,
    f: AesKey,
    s: AesKey,
    e: AesKey,
    app: AesKey,
}

fn device_keys(i: usize) -> Keys {
    let v11 = i % 2 == 1;
    let (f, s, e, app) = (key(i, 1), key(i, 2), key(i, 3), key(i, 4));
    let (s, e) = if v11 { (s, e) } else { (f, f) };
    Keys {
        v11,
        eui: DevEui((0x70b3_d5e7_0000_0000u64 + i as u64).to_be_bytes()),
        addr: DevAddr(0x2600_0000 + i as u32),
        f,
        s,
        e,
        app,
    }
}

fn version(v11: bool) -> MacVersion {
    if v11 { MacVersion::V1_1 } else { MacVersion::V1_0_3 }
}

pub(super) fn device_record(i: usize) -> Device {
    let k = device_keys(i);
    Device {
        dev_eui: k.eui,
        name: format!("meter {i}"),
        serial: format!("SN{i}"),
        reference: String::new(),
        equipment: "water meter".into(),
        address: String::new(),
        geolocation_mode: GeolocationMode::None,
        position: None,
        lifecycle: Lifecycle::Service,
        group: "bench".into(),
        sub_group: String::new(),
        offer: String::new(),
        join_eui: None,
        app_key: None,
        nwk_key: None,
        abp: Some(AbpKeys {
            dev_addr: k.addr,
            nwk_s_key: k.f,
            s_nwk_s_int_key: k.v11.then_some(k.s),
            nwk_s_enc_key: k.v11.then_some(k.e),
            app_s_key: Some(k.app),
        }),
        member_keeps_app_s_key: false,
        profile: Profile {
            mac_version: version(k.v11),
            ..Profile::default()
        },
    }
}

fn sim_device(i: usize) -> SimDevice {
    let k = device_keys(i);
    SimDevice::abp(
        version(k.v11),
        DeviceClass::A,
        k.eui,
        DeviceSession {
            dev_addr: k.addr,
            f_nwk_s_int_key: k.f,
            s_nwk_s_int_key: k.s,
            nwk_s_enc_key: k.e,
            app_s_key: k.app,
            fcnt_up: 0,
            last_n_fcnt_down: None,
            last_a_fcnt_down: None,
            rx_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            opt_neg: k.v11,
        },
    )
}

/// Median of the values; the mean of the two middle ones for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

/// CPU time (user + system, every thread) the process `pid` has used so far, in seconds.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read the node's /proc stat")?;
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (proc(5)), here 0, 11, 12.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))
    };
    let hz = clock_ticks_per_second();
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// This process's own CPU time (the sender), in seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

struct NodeChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl NodeChild {
    fn start(a: &IngestArgs) -> Result<(Self, SocketAddr)> {
        let exe = std::env::current_exe().context("cannot find the entente executable")?;
        let mut child = Command::new(exe)
            .args(["bench", "ingest-node", "--devices"])
            .arg(a.devices.to_string())
            .arg("--gateways")
            .arg(a.gateways.to_string())
            .arg("--dedup-window-ms")
            .arg(a.dedup_window_ms.to_string())
            .args(["--journal", a.journal.as_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the node process")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut node = NodeChild { child, stdin, stdout };
        let line = node.line()?;
        let port: u16 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("node said {line:?} instead of ready"))?;
        Ok((node, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the node process ended");
        }
        Ok(line)
    }

    fn ask(&mut self, command: &str) -> Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.line()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends every datagram, at most `window` unacknowledged at a time; returns the acks
/// counted. Acks that never come (a datagram dropped) release the window after 100 ms.
fn send_round(sock: &std::net::UdpSocket, datagrams: &[Vec<u8>], window: u64) -> Result<u64> {
    let mut acks = RecvBatch::new(16);
    let mut acked = 0u64;
    let mut sent = 0usize;
    let mut drain = |acked: &mut u64| -> Result<usize> {
        match acks.recv(sock) {
            Ok(n) => {
                *acked += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.into()),
        }
    };
    let mut stalled_since: Option<Instant> = None;
    while sent < datagrams.len() {
        while drain(&mut acked)? > 0 {}
        let in_flight = (sent as u64).saturating_sub(acked);
        if in_flight + mmsg::BATCH as u64 > window {
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_millis(100) {
                wait_readable(sock, 10);
                continue;
            }
            // Lost acks: do not wait for them forever.
            acked = sent as u64;
        }
        stalled_since = None;
        let batch: Vec<(&[u8], Option<SocketAddr>)> = datagrams
            .iter()
            .skip(sent)
            .take(mmsg::BATCH)
            .map(|d| (d.as_slice(), None))
            .collect();
        match mmsg::send_batch(sock, &batch) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e.into()),
        }
    }
    // The last acks, so the next round starts with none in flight.
    let deadline = Instant::now() + Duration::from_millis(200);
    while acked < sent as u64 && Instant::now() < deadline {
        if drain(&mut acked)? == 0 {
            wait_readable(sock, 10);
        }
    }
    Ok(acked)
}

/// Sleeps until the socket has a datagram to read, or `ms` milliseconds.
fn wait_readable(sock: &std::net::UdpSocket, ms: i32) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

pub fn ingest(a: IngestArgs) -> Result<Value> {
    if a.devices == 0 || a.rounds == 0 || a.gateways == 0 || a.gateways > 256 {
        bail!("devices, rounds and gateways must be at least 1 (gateways at most 256)");
    }
    let mut sims: Vec<SimDevice> = (0..a.devices).map(sim_device).collect();
    let gws = gateway_euis(a.gateways);
    let (mut node, target) = NodeChild::start(&a)?;
    let pid = node.pid();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(target)?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(4 << 20);

    let mut rounds = Vec::new();
    let mut accepted_total = 0u64;
    for round in 0..a.rounds {
        // Encode every datagram first: the clock measures the node, not the encoder.
        let mut datagrams = Vec::with_capacity(a.devices);
        for (i, d) in sims.iter_mut().enumerate() {
            let phy = d.uplink(1, &[0x01, (round & 0xff) as u8, 0x42, 0x17], false, 5, 0)?;
            let body = PushData {
                rxpk: vec![rxpk(
                    &phy,
                    868.1,
                    "SF7BW125",
                    -80,
                    6.5,
                    (round * 1_000_000 + i) as u32,
                )],
                stat: None,
            };
            let json = serde_json::to_vec(&body)?;
            let mut out = Vec::with_capacity(json.len() + 12);
            let token = ((i & 0xffff) as u16).to_be_bytes();
            let eui = gws.get(i % gws.len()).copied().unwrap_or_default();
            protocol::encode_upstream(
                &Upstream::PushData {
                    version: 2,
                    token,
                    eui,
                    json: &json,
                },
                &mut out,
            );
            datagrams.push(out);
        }
        let cpu_before = process_cpu_seconds(pid)?;
        let own_before = own_cpu_seconds();
        let start = Instant::now();
        let acked = send_round(&sock, &datagrams, a.window)?;
        let sent_at = start.elapsed();
        let expected = accepted_total + a.devices as u64;
        let reply = node.ask(&format!("wait {expected}"))?;
        let elapsed = start.elapsed();
        let cpu = process_cpu_seconds(pid)? - cpu_before;
        let own = own_cpu_seconds() - own_before;
        let now_total: u64 = reply
            .trim()
            .parse()
            .map_err(|_| anyhow!("node answered {reply:?} to wait"))?;
        let accepted = now_total.saturating_sub(accepted_total);
        accepted_total = now_total;
        let rate = accepted as f64 / elapsed.as_secs_f64();
        // Every frame waits the window once: latency, not work. The same round's rate with
        // the window taken out of its time.
        let window = Duration::from_millis(a.dedup_window_ms);
        let busy = elapsed.saturating_sub(window).max(Duration::from_millis(1));
        let rate_ex = accepted as f64 / busy.as_secs_f64();
        let cpu_us = if accepted > 0 {
            cpu * 1e6 / accepted as f64
        } else {
            0.0
        };
        let warm_up = round == 0 && a.rounds > 1;
        eprintln!(
            "round {}{}: {:.0} uplinks/s ({:.0} without the dedup window), node CPU {:.1} µs/uplink ({:.2} s CPU in {:.3} s), {} lost",
            round + 1,
            if warm_up { " (warm-up)" } else { "" },
            rate,
            rate_ex,
            cpu_us,
            cpu,
            elapsed.as_secs_f64(),
            a.devices as u64 - accepted.min(a.devices as u64),
        );
        rounds.push(json!({
            "round": round + 1,
            "warm_up": warm_up,
            "sent": a.devices,
            "acked": acked,
            "accepted": accepted,
            "lost": a.devices as u64 - accepted.min(a.devices as u64),
            "send_seconds": sent_at.as_secs_f64(),
            "seconds": elapsed.as_secs_f64(),
            "uplinks_per_second": rate.round(),
            "uplinks_per_second_excluding_window": rate_ex.round(),
            "node_cpu_seconds": cpu,
            "node_cpu_us_per_uplink": (cpu_us * 10.0).round() / 10.0,
            "sender_cpu_seconds": own,
        }));
        // Let the downlinks the first round triggered settle before measuring again.
        std::thread::sleep(Duration::from_millis(300));
    }
    let counters: Value = serde_json::from_str(node.ask("quit")?.trim()).unwrap_or(Value::Null);
    let _ = node.child.wait();
    let measured: Vec<&Value> = rounds.iter().filter(|r| r["warm_up"] == false).collect();
    let pick = |k: &str| -> Vec<f64> { measured.iter().filter_map(|r| r[k].as_f64()).collect() };
    let median_rate = median(&pick("uplinks_per_second")).unwrap_or(0.0);
    let median_cpu = median(&pick("node_cpu_us_per_uplink")).unwrap_or(0.0);
    let median_rate_ex = median(&pick("uplinks_per_second_excluding_window")).unwrap_or(0.0);
    let lost: u64 = rounds.iter().filter_map(|r| r["lost"].as_u64()).sum();
    eprintln!(
        "median of {} measured rounds: {:.0} uplinks/s ({:.0} without the dedup window), node CPU {:.1} µs/uplink; {} lost",
        measured.len(),
        median_rate,
        median_rate_ex,
        median_cpu,
        lost
    );
    Ok(json!({
        "bench": "ingest",
        "devices": a.devices,
        "gateways": a.gateways,
        "dedup_window_ms": a.dedup_window_ms,
        "journal": a.journal.as_str(),
        "pipeline": "UDP (recvmmsg, segmented acks) -> Semtech parse -> dedup -> MIC -> FCnt -> RocksDB (one synced batch per group)",
        "node": "separate process (bench ingest-node); CPU from /proc/<pid>/stat utime+stime",
        "rounds": rounds,
        "measured_rounds": measured.len(),
        "median_uplinks_per_second": median_rate.round(),
        "median_uplinks_per_second_excluding_window": median_rate_ex.round(),
        "median_node_cpu_us_per_uplink": (median_cpu * 10.0).round() / 10.0,
        "lost": lost,
        "node_counters": counters,
    }))
}

/// The node process: the gateway server, the network server and RocksDB, driven by
/// commands on stdin (see the module documentation).
pub async fn ingest_node(a: IngestNodeArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let clock: SharedClock = Arc::new(SystemClock);
    let tables: Vec<&'static str> = Registry::TABLES
        .iter()
        .chain(&Journal::TABLES)
        .chain(entente_lns::tables::ALL)
        .copied()
        .collect();
    let store = Arc::new(Store::open_sealed(dir.path(), &tables, Sealer::ephemeral()?)?);
    let member: MemberId = "bench".parse()?;
    let registry = Arc::new(Registry::load(
        store.clone(),
        clock.clone(),
        member,
        Duration::from_secs(90),
    )?);
    let mut prom = prometheus_client::registry::Registry::default();
    let gm = GatewayMetrics::register(&mut prom);
    let server_cfg = ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        frame_queue: 1 << 20,
        ..ServerConfig::default()
    };
    // As a node runs: every acknowledged frame journaled until it is safe.
    let journal = match a.journal {
        JournalMode::On => Some(Arc::new(Journal::open(store.clone())?.0)),
        JournalMode::Off => None,
    };
    let (server, frames) =
        GatewayServer::bind(&server_cfg, registry.clone(), gm.clone(), journal.clone()).await?;
    let lns_cfg = LnsConfig {
        dev_addr_block: "26000000/8".parse().map_err(anyhow::Error::msg)?,
        dedup_window: Duration::from_millis(a.dedup_window_ms),
        ..LnsConfig::default()
    };
    let mut lns = NetworkServer::new(store.clone(), server.clone(), lns_cfg, clock)?;
    if let Some(j) = journal {
        lns = lns.with_journal(j, Vec::new());
    }
    let lns = Arc::new(lns);
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.clone().run(shutdown.clone()));
    let no_peers = tokio::sync::mpsc::channel(1).1;
    let lns_task = tokio::spawn(lns.clone().run(frames, no_peers, shutdown.clone()));

    for (i, eui) in gateway_euis(a.gateways).into_iter().enumerate() {
        registry.create(NewGateway {
            eui,
            name: format!("bench-{i}"),
            owner: None,
            position: None,
            source: None,
        })?;
    }
    // Devices, provisioned in batches as an import would.
    let records: Vec<Device> = (0..a.devices).map(device_record).collect();
    for chunk in records.chunks(5_000) {
        lns.create_devices(chunk)?;
    }
    drop(records);

    let port = server.local_addr()?.port();
    let mut out = std::io::stdout();
    writeln!(out, "ready {port}")?;
    out.flush()?;
    // Commands arrive on stdin, read by a plain thread (tokio's stdin is not enabled).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("wait ") {
            let target: u64 = n.parse().context("wait needs a count")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while lns.metrics.uplinks_accepted.get() < target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            writeln!(out, "{}", lns.metrics.uplinks_accepted.get())?;
            out.flush()?;
        } else if line == "quit" {
            break;
        }
    }
    shutdown.cancel();
    let _ = server_task.await;
    let _ = lns_task.await;
    let datagrams_dropped: serde_json::Map<String, Value> = DatagramDrop::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), json!(gm.datagrams_dropped(*r))))
        .collect();
    let frames_dropped: serde_json::Map<String, Value> = FrameDrop::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), json!(gm.frames_dropped(*r))))
        .collect();
    let counters = json!({
        "datagrams_received": gm.datagrams_received.get(),
        "push_data": gm.push_data.get(),
        "datagrams_dropped": datagrams_dropped,
        "frames_received": gm.frames_received.get(),
        "frames_accepted": gm.frames_accepted.get(),
        "frames_dropped": frames_dropped,
        "uplinks_accepted": lns.metrics.uplinks_accepted.get(),
    });
    writeln!(out, "{counters}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[38_000.0, 57_000.0]), Some(47_500.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn own_process_cpu_time_reads_from_proc() {
        let t = process_cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
    }
}
