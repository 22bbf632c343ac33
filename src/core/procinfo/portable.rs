//! The macOS backend (and any other non-Linux unix), through `sysinfo`
//! (`proc_pidinfo`, `sysctl`, `host_statistics64` underneath). On Linux it is
//! compiled for the tests only, which run the same checks against both
//! backends.

use super::{HostMemory, ProcState};
use std::time::Duration;
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

/// Refreshes just `pid` with `what`, and hands its entry to `f`.
fn with_process<T>(
    pid: u32,
    what: ProcessRefreshKind,
    f: impl FnOnce(&sysinfo::Process) -> Option<T>,
) -> Option<T> {
    let mut sys = System::new().ok()?;
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, what);
    sys.process(pid).and_then(f)
}

pub fn state(pid: u32) -> Option<ProcState> {
    with_process(pid, ProcessRefreshKind::nothing(), |p| {
        Some(ProcState {
            // Seconds since the epoch: pids are handed out in order, so one
            // reused within the same second does not happen in practice.
            start: p.start_time(),
            zombie: matches!(p.status(), sysinfo::ProcessStatus::Zombie),
        })
    })
}

pub fn parent(pid: u32) -> Option<u32> {
    with_process(pid, ProcessRefreshKind::nothing(), |p| {
        p.parent().map(|p| p.as_u32())
    })
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    with_process(pid, ProcessRefreshKind::nothing().with_memory(), |p| {
        Some(p.memory())
    })
}

pub fn cpu_time(pid: u32) -> Option<Duration> {
    with_process(pid, ProcessRefreshKind::nothing().with_cpu(), |p| {
        Some(Duration::from_millis(p.accumulated_cpu_time()))
    })
}

pub fn host_memory() -> Option<HostMemory> {
    let mut sys = System::new().ok()?;
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let total = sys.total_memory();
    (total > 0).then(|| HostMemory {
        total,
        available: Some(sys.available_memory()),
    })
}

pub fn load_average() -> Option<[f64; 3]> {
    let l = System::load_average().ok()?;
    Some([l.one, l.five, l.fifteen])
}

pub fn own_processes_with_env(name: &str) -> Vec<(u32, String)> {
    let Ok(mut sys) = System::new() else {
        return Vec::new();
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_user(UpdateKind::Always)
            .with_environ(UpdateKind::Always),
    );
    let me = nix::unistd::getuid().as_raw();
    let prefix = format!("{name}=");
    sys.processes()
        .values()
        .filter(|p| p.user_id().is_some_and(|u| **u == me))
        .filter_map(|p| {
            let v = p
                .environ()
                .iter()
                .find_map(|kv| kv.to_str()?.strip_prefix(&prefix))?;
            Some((p.pid().as_u32(), v.to_owned()))
        })
        .collect()
}
