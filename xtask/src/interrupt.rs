//! Ctrl-C / SIGTERM become a flag that long-running steps poll, so that they return an error and the
//! guards of every started process and temp dir run their cleanup on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))?;
    Ok(())
}

pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Errors out once an interrupt was requested.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}
