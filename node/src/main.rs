use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use entente::{
    agreement, bench, config::NodeConfig, demo, device, gateway, init, ledger, master_key, roster, run,
};
use entente_model::MemberId;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: the uplink pipeline allocates and frees
/// small values per frame from two threads, where glibc's malloc spent about a tenth of
/// the node's CPU in `bench ingest`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Entente: a federated, peer-to-peer LoRaWAN roaming network for public territories.
///
/// Each territory runs one node: its gateways, its LoRaWAN network server, its database
/// and its keys. Start with `entente init`, then `entente node`.
#[derive(Parser)]
#[command(name = "entente", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a node directory: a commented node.toml, the node's ed25519 key, the master
    /// key sealing device keys at rest and the operator API token (all mode 0600). Never
    /// overwrites an existing node.
    ///
    /// Example: entente init --dir /srv/entente --member tours-metropole --name "Tours Métropole"
    Init {
        /// Directory to create the node in.
        #[arg(long)]
        dir: PathBuf,
        /// The member this node belongs to: a lowercase slug such as `tours-metropole`.
        #[arg(long)]
        member: MemberId,
        /// The member's name as partners see it.
        #[arg(long)]
        name: String,
        /// UDP port for the gateways' Semtech packet forwarders (0 picks a free port).
        #[arg(long, default_value_t = 1700)]
        gateway_port: u16,
        /// TCP port of the management API, bound to 127.0.0.1 (0 picks a free port).
        #[arg(long, default_value_t = 8080)]
        api_port: u16,
    },
    /// Run the node until SIGINT or SIGTERM, then close the database cleanly.
    ///
    /// The real ports are written to DATA_DIR/listening.json once the node listens.
    Node {
        /// Path to node.toml (written by `entente init`).
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
    },
    /// Run a scenario's federation as real processes on loopback (default
    /// `val-de-loire`): agreements, days of traffic with roaming, joins and downlinks, an
    /// outage, usage statements and a billing period; then a report.
    Demo(demo::DemoArgs),
    /// Manage the devices of a running node (through its API, with the operator token).
    Device {
        #[command(subcommand)]
        command: DeviceCmd,
    },
    /// The gateways of a running node: list them, pin where their datagrams may come from.
    Gateway {
        #[command(subcommand)]
        command: GatewayCmd,
    },
    /// Cooperation conventions with partners: propose, approve, amend, give notice.
    Agreement {
        #[command(subcommand)]
        command: agreement::AgreementCmd,
    },
    /// Access requests under an agreement (001 art. 5): filed by the guest, answered by
    /// the host within a month.
    AccessRequest {
        #[command(subcommand)]
        command: agreement::AccessCmd,
    },
    /// Usage statements, invoices and the signed ledger; `verify` works offline.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCmd,
    },
    /// The joint technical committee's work.
    Committee {
        #[command(subcommand)]
        command: CommitteeCmd,
    },
    /// Create, sign and show a federation roster.
    Roster {
        #[command(subcommand)]
        command: RosterCmd,
    },
    /// The master key that seals device and session keys in the database.
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Measure the node's speed; prints figures as JSON.
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Draw a new master key and re-seal every stored key under it, then forget the old
    /// one. Run it with the node stopped; if interrupted, run it again.
    ///
    /// Example: entente keys rotate --config /srv/entente/node.toml
    Rotate {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum GatewayCmd {
    /// Pin a gateway to the address or network its datagrams may come from; without
    /// --source, unpin it and let its next datagram's address become the pin. Datagrams
    /// for its EUI from anywhere else are dropped and counted (`source_mismatch`).
    ///
    /// Example: entente gateway pin --config /srv/entente/node.toml 0080000000000001 --source 192.0.2.0/24
    Pin {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        /// The gateway's EUI (16 hex digits).
        eui: String,
        /// An IP address (any port) or a network such as 192.0.2.0/24.
        #[arg(long)]
        source: Option<String>,
    },
    /// List the node's gateways with their status and pinned source.
    List {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Import devices from the conventions' CSV template (French headers or English
    /// aliases, `;` or `,`). All or nothing: an error names the line and the column.
    ///
    /// Example: entente device import --config /srv/entente/node.toml compteurs.csv
    Import {
        /// Path to the running node's node.toml.
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        /// The CSV file.
        file: PathBuf,
    },
    /// List the node's devices (no keys are ever shown).
    List {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CommitteeCmd {
    /// Prepare this quarter's access-rights review of an agreement, signed by this member
    /// (or countersign the one the other party prepared); writes Markdown and JSON.
    Review {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        /// Directory the review files are written to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum RosterCmd {
    /// Print the header of a new roster (redirect it to federation/NAME/roster.toml).
    New {
        #[arg(long)]
        federation: String,
        /// majority (more than half of the members sign) or all.
        #[arg(long, default_value = "majority")]
        rule: String,
    },
    /// Print this node's [[member]] entry, to append to a roster.
    Member(roster::MemberArgs),
    /// Sign a roster with this node's key (appends a [[signature]] block).
    Sign {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        file: PathBuf,
    },
    /// Show a roster's members and whether its signatures make it valid (exit 1 if not).
    Show { file: PathBuf },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Uplinks per second through the full home pipeline (UDP, dedup, MIC, FCnt, RocksDB).
    Ingest(bench::IngestArgs),
    /// Deliveries per second from the RocksDB queue to a local HTTP receiver.
    Delivery(bench::DeliveryArgs),
    /// Start-up time of a real node whose database holds a million uplinks.
    Restart(bench::RestartArgs),
    /// A join storm (2 000 OTAA joins in 10 s) while 2 000 data uplinks/s flow: the share
    /// of join accepts and Class A ACKs that made their receive window.
    Joins(bench::JoinsArgs),
    /// Roamed uplinks per second and the roaming round trip, two nodes on loopback.
    Roaming(bench::RoamingArgs),
    /// Cost of one federation routing lookup as members and declared devices grow.
    Routing,
    /// A year of billing for a million devices, from the counters to signed records.
    Billing(bench::BillingArgs),
    /// Bytes and time to reconcile two members after a one-day and a one-month partition.
    Sync(bench::SyncArgs),
    /// N nodes (100 by default) in one roster: time to form the mesh, routing, memory.
    Federation(bench::FederationArgs),
    /// The node process `bench ingest` starts and drives (not for direct use).
    #[command(hide = true)]
    IngestNode(bench::IngestNodeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Init {
            dir,
            member,
            name,
            gateway_port,
            api_port,
        } => {
            let out = init::run(&init::InitArgs {
                dir: &dir,
                member: &member,
                name: &name,
                gateway_port,
                api_port,
            })?;
            println!("created {}", out.config.display());
            println!("node public key: {}", out.public_key_hex);
            println!("operator token:  {}", dir.join("operator.token").display());
            println!("start it with:   entente node --config {}", out.config.display());
            Ok(())
        }
        Cmd::Node { config } => {
            let cfg = NodeConfig::load(&config)?;
            let filter = EnvFilter::try_from_default_env().or_else(|_| cfg.log.filter())?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            runtime()?.block_on(run::run(cfg))
        }
        Cmd::Demo(args) => runtime()?.block_on(demo::run(args)),
        Cmd::Keys {
            command: KeysCmd::Rotate { config },
        } => {
            let r = master_key::rotate(&NodeConfig::load(&config)?)?;
            println!(
                "master key {} replaced by {}: {} rows re-sealed",
                r.from, r.to, r.resealed
            );
            Ok(())
        }
        Cmd::Device { command } => match command {
            DeviceCmd::Import { config, file } => {
                let n = runtime()?.block_on(device::import(&config, &file))?;
                println!("imported {n} devices");
                Ok(())
            }
            DeviceCmd::List { config } => {
                let v = runtime()?.block_on(device::list(&config))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
        },
        Cmd::Gateway { command } => {
            let v = match command {
                GatewayCmd::Pin { config, eui, source } => {
                    runtime()?.block_on(gateway::pin(&config, &eui, source.as_deref()))?
                }
                GatewayCmd::List { config } => runtime()?.block_on(gateway::list(&config))?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Cmd::Agreement { command } => {
            let v = runtime()?.block_on(agreement::agreement(command))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Cmd::Ledger { command } => {
            if let Some(v) = runtime()?.block_on(ledger::run(command))? {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(())
        }
        Cmd::AccessRequest { command } => {
            let v = runtime()?.block_on(agreement::access(command))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Cmd::Committee {
            command:
                CommitteeCmd::Review {
                    config,
                    agreement,
                    out,
                },
        } => {
            let (md, js, v) = runtime()?.block_on(agreement::committee_review(&config, &agreement, &out))?;
            println!("{}", v["markdown"].as_str().unwrap_or_default());
            println!("written: {} and {}", md.display(), js.display());
            Ok(())
        }
        Cmd::Roster { command } => match command {
            RosterCmd::New { federation, rule } => {
                print!("{}", roster::new(&federation, &rule));
                Ok(())
            }
            RosterCmd::Member(a) => {
                print!("{}", roster::member(&a)?);
                Ok(())
            }
            RosterCmd::Sign { config, file } => {
                roster::sign(&config, &file)?;
                println!("signed {}", file.display());
                Ok(())
            }
            RosterCmd::Show { file } => {
                let (text, valid) = roster::show(&file)?;
                print!("{text}");
                if valid {
                    Ok(())
                } else {
                    anyhow::bail!("{} is not valid", file.display())
                }
            }
        },
        Cmd::Bench { command } => match command {
            BenchCmd::Ingest(args) => {
                let v = bench::ingest(args)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BenchCmd::Roaming(args) => {
                let v = runtime()?.block_on(bench::roaming(args))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BenchCmd::Federation(args) => {
                let v = runtime()?.block_on(bench::federation(args))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BenchCmd::Sync(args) => {
                println!("{}", serde_json::to_string_pretty(&bench::sync(args)?)?);
                Ok(())
            }
            BenchCmd::Billing(args) => {
                println!("{}", serde_json::to_string_pretty(&bench::billing(args)?)?);
                Ok(())
            }
            BenchCmd::Routing => {
                println!("{}", serde_json::to_string_pretty(&bench::routing()?)?);
                Ok(())
            }
            BenchCmd::Joins(args) => {
                let v = runtime()?.block_on(bench::joins(args))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BenchCmd::Restart(args) => {
                let v = runtime()?.block_on(bench::restart(args))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BenchCmd::IngestNode(args) => runtime()?.block_on(bench::ingest_node(args)),
            BenchCmd::Delivery(args) => {
                let v = runtime()?.block_on(bench::delivery(args))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
        },
    }
}
