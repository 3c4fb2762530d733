//! Developer commands: `cargo xtask <command>`.

mod bench_l4;
mod build_ebpf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object (and the daemon that embeds it).
    BuildEbpf {
        #[arg(long)]
        release: bool,
    },
    /// L4 data paths side by side: direct, Puerta kernel/userspace, HAProxy.
    BenchL4 {
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 4.0)]
        secs: f64,
        /// Ping-pong round trips.
        #[arg(long, default_value_t = 20_000)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf { release } => build_ebpf::run(release),
        Command::BenchL4 { secs, rounds } => bench_l4::run(bench_l4::Options { secs, rounds }),
    }
}
