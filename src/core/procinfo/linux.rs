//! Linux backend: straight from /proc, one small file read per fact (no
//! process-table scan, no fork).

use super::{HostMemory, ProcState};
use std::time::Duration;

/// The fields after the command name in /proc/PID/stat (the name may hold
/// spaces and parentheses: everything up to the last ')' is skipped).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

pub fn state(pid: u32) -> Option<ProcState> {
    let f = stat_fields(pid)?;
    Some(ProcState {
        // Field 22 of stat: clock ticks since boot.
        start: f.get(19)?.parse().ok()?,
        zombie: f.first().is_some_and(|s| s == "Z"),
    })
}

/// Field 4 of stat.
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = meminfo_kb(&status, "VmRSS:")?;
    Some(kb * 1024)
}

pub fn cpu_time(pid: u32) -> Option<Duration> {
    let f = stat_fields(pid)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / hz,
    ))
}

/// `KEY:   1234 kB` lines of /proc/meminfo and /proc/PID/status.
fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn host_memory() -> Option<HostMemory> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(HostMemory {
        total: meminfo_kb(&info, "MemTotal:")? * 1024,
        available: meminfo_kb(&info, "MemAvailable:").map(|k| k * 1024),
    })
}

pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

pub fn own_processes_with_env(name: &str) -> Vec<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::getuid().as_raw();
    // A container's processes are in this table too, and where the engine
    // runs them as this user (root, no user namespace) they pass the uid
    // check: a box could set `name` itself. Ours share our pid namespace.
    let ns = |dir: &std::path::Path| std::fs::read_link(dir.join("ns/pid")).ok();
    let my_ns = ns(std::path::Path::new("/proc/self"));
    let prefix = format!("{name}=");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if entry.metadata().map(|m| m.uid()).ok() != Some(me) {
            continue;
        }
        if my_ns.is_none() || ns(&entry.path()) != my_ns {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // Only the one variable is read; the others are never kept.
        if let Some(v) = environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        {
            out.push((pid, String::from_utf8_lossy(v).into_owned()));
        }
    }
    out
}
