//! Developer commands: `cargo xtask <command>`. Each command lives in its own module; this file only
//! parses the command line and dispatches.

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod interrupt;
mod paths;
mod setup;
mod stack;
mod test;

mod build_ebpf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install whatever is missing (apt packages, rust-src, bpf-linker, bpffs, Python venv).
    Setup,
    /// Set up, build, start local backends and Puerta, run a short workload, stay up until Ctrl-C.
    Demo {
        #[arg(value_enum, default_value_t = demo::Mode::Mongodb)]
        mode: demo::Mode,
    },
    /// The whole suite: setup, release build, fmt, clippy, tests, 60 s of each fuzz target, quick benchmark.
    Test,
    /// End-to-end benchmarks against peers on loopback; tables on stdout, JSON under target/bench/.
    /// `bench soak --minutes N`: both modes under load with backend kills, RSS and fds over time.
    Bench {
        #[arg(value_enum, default_value_t = bench::Suite::All)]
        suite: bench::Suite,
        /// Small sizes; finishes in under two minutes (what `cargo xtask test` runs).
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        soak: bench::SoakArgs,
    },
    /// Run every cargo-fuzz target (or the named ones) for a bounded time; fails on any crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Stop each target after this many executions.
        #[arg(long)]
        runs: Option<u64>,
        /// `address` or `none` (faster; for long runs).
        #[arg(long, default_value = "address")]
        sanitizer: String,
        targets: Vec<String>,
    },
    /// Build the eBPF object (and the daemon that embeds it).
    BuildEbpf {
        #[arg(long)]
        release: bool,
    },
}

fn main() -> anyhow::Result<()> {
    interrupt::install()?;
    match Cli::parse().command {
        Command::Setup => setup::run_setup(),
        Command::Demo { mode } => demo::run(mode),
        Command::Test => test::run_all(),
        Command::Bench { suite, quick, soak } => {
            setup::run_setup()?;
            bench::run(suite, quick, soak)
        }
        Command::Fuzz {
            seconds,
            runs,
            sanitizer,
            targets,
        } => {
            setup::run_setup()?;
            fuzz::run_all(&fuzz::Options {
                seconds,
                runs,
                sanitizer,
                targets,
            })
        }
        Command::BuildEbpf { release } => build_ebpf::run(release),
    }
}
