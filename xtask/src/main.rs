//! Developer commands: `cargo xtask <command>`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object.
    BuildEbpf,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf => anyhow::bail!("not implemented yet"),
    }
}
