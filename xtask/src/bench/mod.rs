//! `cargo xtask bench [mongodb|redis|all] [--quick]`.

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Suite {
    Mongodb,
    Redis,
    All,
}

pub fn run(_suite: Suite, _quick: bool) -> anyhow::Result<()> {
    Ok(())
}
