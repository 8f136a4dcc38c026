//! `entente demo [SCENARIO]`: a scenario's federation as real `entente` processes on
//! loopback, each with its own data dir, gateways and devices from `sim` over real UDP,
//! libp2p between nodes. It runs the agreements (proposal, approval), days of traffic
//! with roaming, joins and downlinks, a node outage and its recovery, the usage
//! statements and a billing period, then prints a report (and `--json` writes it).
//!
//! [`federation`] holds the nodes and their clocks, [`provision`] the gateways, devices
//! and agreements, [`traffic`] the days, [`settlement`] the statements, invoices, reviews
//! and ledgers, [`observe`] what the nodes report, [`report`] the text of the report.

mod federation;
mod inbox;
mod observe;
mod provision;
mod report;
mod settlement;
mod traffic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::scenario::Scenario;

pub use federation::Federation;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A scenario of `scenarios/` (or a path to one).
    #[arg(default_value = "val-de-loire")]
    pub scenario: String,
    /// Where the nodes' directories go (default: a new directory under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run this many days instead of the scenario's.
    #[arg(long)]
    pub days: Option<u32>,
}

const WAIT: Duration = Duration::from_secs(10);

fn step(s: &str) {
    eprintln!("==> {s}");
}

/// Runs a scenario end to end and returns the report.
pub async fn run_scenario(sc: Scenario, base: &Path, exe: &Path) -> Result<Value> {
    let days = sc.days;
    step(&format!(
        "{} — {} members, {} days",
        sc.title,
        sc.members.len(),
        days
    ));
    let mut f = Federation::start(sc, base, exe).await?;
    let result = play(&mut f, days).await;
    let stop = f.stop().await;
    let report = result?;
    stop?;
    Ok(report)
}

/// Everything between start and stop: set-up, the days, the settlement, the report.
async fn play(f: &mut Federation, days: u32) -> Result<Value> {
    f.provision().await?;
    f.agree().await?;
    for d in 0..days {
        let line = f.day(d).await?;
        step(&format!("{line}; delivered so far {:?}", f.delivered()));
    }
    f.settle(Duration::from_secs(30)).await;
    let sla = f.sla().await?;
    step("committee reviews prepared and countersigned");
    let reviews = f.reviews().await?;
    step("signing the daily usage statements");
    let statements = f.statements().await?;
    step("billing period: clocks to 2 January, yearly invoices issued and accepted");
    let invoices = f.billing().await?;
    let ledgers = f.verify_ledgers().await?;
    let nodes = f.traffic_report().await?;
    Ok(json!({
        "scenario": f.sc.name, "title": f.sc.title, "base": f.base.display().to_string(),
        "nodes": nodes, "sla": sla, "statements": statements, "invoices": invoices,
        "reviews": reviews, "ledgers": ledgers, "run": f.summary(),
        "data_dirs": f.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "roster": f.roster.display().to_string(),
    }))
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let path = Scenario::find(&args.scenario)?;
    let mut sc = Scenario::load(&path)?;
    if let Some(d) = args.days {
        sc.days = d.clamp(1, 366);
    }
    let base = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("entente-demo-{}-{}", sc.name, std::process::id())),
    };
    if base.exists()
        && std::fs::read_dir(&base)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        bail!("{} is not empty; pass another --dir", base.display());
    }
    let exe = std::env::current_exe().context("cannot find the entente executable")?;
    let report = run_scenario(sc, &base, &exe).await?;
    println!("{}", report::text(&report));
    if let Some(j) = args.json {
        std::fs::write(&j, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
        println!("JSON report: {}", j.display());
    }
    Ok(())
}
