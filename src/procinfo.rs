//! Facts about host processes from /proc: start times (so a reused pid is
//! never taken for ours), liveness, and CPU/memory figures.

/// Start time of `pid` in clock ticks since boot (field 22 of stat).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive and, when known, is the same process as before.
pub fn alive(pid: u32, expected_start: Option<u64>) -> bool {
    match start_time(pid) {
        None => false,
        Some(t) => {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
                .unwrap_or(false);
            !zombie && expected_start.is_none_or(|e| e == t)
        }
    }
}

/// The host's memory (`MemTotal`) in bytes.
pub fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU time of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process_is_alive_and_start_time_matters() {
        let me = std::process::id();
        let t = super::start_time(me).unwrap();
        assert!(super::alive(me, Some(t)));
        assert!(!super::alive(me, Some(t + 1)));
        assert!(!super::alive(u32::MAX - 1, None));
        assert!(super::rss_bytes(me).unwrap() > 0);
    }
}
