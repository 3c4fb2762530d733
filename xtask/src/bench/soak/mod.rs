//! `cargo xtask bench soak --minutes N [--kill-every SEC] [--sample-every SEC]`: both modes at once
//! under a moderate mixed load for N minutes, with a backend killed every K seconds in each, sampling
//! each daemon's RSS, descriptors, threads and connections. A leak shows as growth over time, so the
//! verdict is the slope over the second half (flat is the goal), not any speed. Exits non-zero only if
//! a daemon died or the harness itself broke.

mod load;
mod mongo_chaos;
mod redis_admin;
mod redis_chaos;
mod run_loop;
mod sample;
mod stacks;
mod summary;
mod table;
mod timeline;

use std::time::Duration;

use anyhow::bail;

use super::machine::Machine;
use crate::paths;
use crate::stack::puerta;

/// The soak's knobs (ignored by the other suites, and refused with them).
#[derive(clap::Args, Clone, Copy, Default)]
pub struct SoakArgs {
    /// soak: how long the load runs, in minutes (fractions allowed, e.g. 0.5) [default: 30]
    #[arg(long)]
    pub minutes: Option<f64>,
    /// soak: seconds between backend kills, in each mode [default: 60]
    #[arg(long)]
    pub kill_every: Option<u64>,
    /// soak: seconds between samples [default: 10]
    #[arg(long)]
    pub sample_every: Option<u64>,
}

impl SoakArgs {
    pub fn given(&self) -> bool {
        self.minutes.is_some() || self.kill_every.is_some() || self.sample_every.is_some()
    }
}

/// The validated plan of one run.
#[derive(Clone, Copy, serde::Serialize)]
pub struct Plan {
    pub minutes: f64,
    #[serde(serialize_with = "summary::as_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "summary::as_secs")]
    pub kill_every: Duration,
    #[serde(serialize_with = "summary::as_secs")]
    pub sample_every: Duration,
}

impl Plan {
    fn new(args: SoakArgs) -> anyhow::Result<Plan> {
        let minutes = args.minutes.unwrap_or(30.0);
        if !(minutes.is_finite() && minutes > 0.0 && minutes <= 24.0 * 60.0) {
            bail!("--minutes must be more than 0 and at most a day, not {minutes}");
        }
        let kill_every = args.kill_every.unwrap_or(60);
        if kill_every < 20 {
            bail!(
                "--kill-every must be at least 20 seconds (a Redis failover and rejoin take ~10 s)"
            );
        }
        let sample_every = args.sample_every.unwrap_or(10);
        if sample_every == 0 {
            bail!("--sample-every must be at least 1 second");
        }
        Ok(Plan {
            minutes,
            duration: Duration::from_secs_f64(minutes * 60.0),
            kill_every: Duration::from_secs(kill_every),
            sample_every: Duration::from_secs(sample_every),
        })
    }

    fn command(&self) -> String {
        format!(
            "cargo xtask bench soak --minutes {} --kill-every {} --sample-every {}",
            self.minutes,
            self.kill_every.as_secs(),
            self.sample_every.as_secs()
        )
    }
}

pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args)?;
    super::raise_nofile();
    puerta::build_release()?;
    let dir = tempfile::Builder::new().prefix("puerta-soak-").tempdir()?;
    eprintln!("==> logs and configs in {}", dir.path().display());
    let machine = Machine::detect();
    let outcome = run_loop::run(dir.path(), &plan)?;
    let report = summary::Report::build(&outcome);
    println!(
        "\n## Puerta soak\n\nMachine: {}. Command: `{}`.\n",
        machine.describe(),
        plan.command()
    );
    println!("{}", table::markdown(&outcome, &plan));
    println!("{}", report.markdown());
    let json = write_json(&machine, &plan, &outcome, &report)?;
    println!("JSON: {}", json.display());
    if let Some(reason) = &outcome.ended_by {
        if crate::interrupt::requested() {
            bail!("soak interrupted");
        }
        // Keep the logs: they are what explains a dead daemon or a broken harness.
        let kept = dir.keep();
        bail!(
            "soak stopped early: {reason}; logs kept in {}",
            kept.display()
        );
    }
    Ok(())
}

fn write_json(
    machine: &Machine,
    plan: &Plan,
    outcome: &run_loop::Outcome,
    report: &summary::Report,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir)?;
    let doc = serde_json::json!({
        "machine": machine,
        "command": plan.command(),
        "plan": plan,
        "summary": report,
        "samples": outcome.samples,
        "events": outcome.timeline.events,
        "windows": outcome.timeline.windows,
    });
    let path = dir.join(format!("soak-{}.json", machine.unix_time));
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    Ok(path)
}
