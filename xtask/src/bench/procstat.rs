//! What /proc says about a process and the kernel: CPU time, resident memory, kernel memory.

/// utime + stime of `pid` (all threads) in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line; 12 and 13 after "pid (comm)".
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

/// CPU time spent by the whole machine (user, nice, system, irq, softirq over all cores) in seconds.
/// The kernel path's splicing runs in softirq context and is charged to no process, so per-process
/// CPU alone would make it look free; this counts it (and the client's and backend's share, which is
/// the same for every target).
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow::anyhow!("no cpu line in /proc/stat"))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    Ok(busy / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|t| t as f64)
        .unwrap_or(100.0)
}

/// MemAvailable in KiB: what the machine could still give without swapping.
pub fn mem_available_kib() -> anyhow::Result<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    kib_field(&meminfo, "MemAvailable:").ok_or_else(|| anyhow::anyhow!("no MemAvailable"))
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&status, "VmRSS:").ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

/// Kernel memory that sockets cost, in KiB: live slab objects (socket structs, files, epoll items,
/// ...) plus TCP buffer pages. System-wide, so it includes every socket of a connection (client, proxy,
/// backend). Counts allocated objects from /proc/slabinfo rather than `Slab:` from /proc/meminfo,
/// which keeps the pages of freed objects and would credit a later run with an earlier one's memory.
pub fn kernel_kib() -> anyhow::Result<f64> {
    let slab = live_slab_kib().or_else(|_| {
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        Ok::<_, anyhow::Error>(kib_field(&meminfo, "Slab:").unwrap_or(0.0))
    })?;
    let sockstat = std::fs::read_to_string("/proc/net/sockstat")?;
    let tcp_pages = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "mem")?;
            words.get(i + 1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    Ok(slab + tcp_pages * 4.0)
}

/// Sum of active_objs × objsize over all slab caches (needs root).
fn live_slab_kib() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/slabinfo")?;
    let bytes: f64 = text
        .lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let active: f64 = f.get(1)?.parse().ok()?;
            let size: f64 = f.get(3)?.parse().ok()?;
            Some(active * size)
        })
        .sum();
    Ok(bytes / 1024.0)
}

fn kib_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_kib(pid).unwrap() > 0.0);
        assert!(kernel_kib().unwrap() > 0.0);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }
}
