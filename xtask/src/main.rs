//! Developer commands: `cargo xtask <command>`.

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf { release } => build_ebpf::run(release),
    }
}
