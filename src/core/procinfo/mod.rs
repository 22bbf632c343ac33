//! Facts about host processes and the host itself: liveness with start
//! times (so a reused pid is never taken for ours), resident memory, CPU
//! time, host memory and load. One interface, two backends: /proc on Linux,
//! `sysinfo` (proc_pidinfo/sysctl) on macOS.

use std::time::Duration;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(any(not(target_os = "linux"), test))]
mod portable;

#[cfg(target_os = "linux")]
use linux as backend;
#[cfg(not(target_os = "linux"))]
use portable as backend;

/// What tells one process apart from a later one with the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcState {
    /// When it started, in the backend's own unit (clock ticks since boot on
    /// Linux, seconds since the epoch on macOS): only ever compared with a
    /// value read earlier on the same host.
    start: u64,
    zombie: bool,
}

/// The host's memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    pub total: u64,
    /// What new work can use without swapping, when the host says.
    pub available: Option<u64>,
}

/// Start time of `pid`, to be stored and compared later with [`alive`].
pub fn start_time(pid: u32) -> Option<u64> {
    backend::state(pid).map(|s| s.start)
}

/// Whether `pid` is alive (not a zombie) and, when known, is the same
/// process as before.
pub fn alive(pid: u32, expected_start: Option<u64>) -> bool {
    alive_from(backend::state(pid), expected_start)
}

fn alive_from(state: Option<ProcState>, expected_start: Option<u64>) -> bool {
    state.is_some_and(|s| !s.zombie && expected_start.is_none_or(|e| e == s.start))
}

/// Whether `pid` is this process's parent, or that one's, and so on (the
/// init process and the kernel's never count).
pub fn is_ancestor(pid: u32) -> bool {
    if pid <= 1 {
        return false;
    }
    let mut cur = std::process::id();
    // A bound, not a depth any real tree has: a pid reused along the walk
    // cannot make it loop.
    for _ in 0..256 {
        match backend::parent(cur) {
            Some(p) if p == pid => return true,
            Some(p) if p > 1 => cur = p,
            _ => return false,
        }
    }
    false
}

/// Resident memory of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    backend::rss_bytes(pid)
}

/// User + system CPU time `pid` has used.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    backend::cpu_time(pid)
}

/// Total and available memory of the host.
pub fn host_memory() -> Option<HostMemory> {
    backend::host_memory()
}

/// The host's memory in bytes.
pub fn mem_total_bytes() -> Option<u64> {
    host_memory().map(|m| m.total)
}

/// Load averages over 1, 5 and 15 minutes.
pub fn load_average() -> Option<[f64; 3]> {
    backend::load_average()
}

/// Processes of the current user whose environment sets `name`: (pid, value).
/// Only that variable is read; the rest of each environment is never kept.
pub fn own_processes_with_env(name: &str) -> Vec<(u32, String)> {
    backend::own_processes_with_env(name)
}

/// The same checks for every backend compiled here: on Linux both the /proc
/// backend and the portable one (which is macOS's) run them.
#[cfg(test)]
mod tests {
    macro_rules! backend_tests {
        ($name:ident, $b:path) => {
            mod $name {
                use super::super::alive_from;
                use std::process::{Command, Stdio};
                use std::time::{Duration, Instant};
                use $b as b;

                fn alive(pid: u32, start: Option<u64>) -> bool {
                    alive_from(b::state(pid), start)
                }

                #[test]
                fn own_process_is_alive_and_its_start_time_matters() {
                    let me = std::process::id();
                    let t = b::state(me).unwrap().start;
                    assert_eq!(b::state(me).unwrap().start, t, "start time is stable");
                    assert!(alive(me, Some(t)));
                    assert!(alive(me, None));
                    assert!(!alive(me, Some(t + 1)), "another start: a reused pid");
                    assert!(!alive(u32::MAX - 1, None));
                    assert_eq!(b::rss_bytes(u32::MAX - 1), None);
                }

                #[test]
                fn a_child_is_alive_until_it_exits_and_a_zombie_is_not() {
                    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
                    let pid = child.id();
                    let start = b::state(pid).unwrap().start;
                    assert!(alive(pid, Some(start)));
                    child.kill().unwrap();
                    // Not reaped yet: a zombie, which is dead to us.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while alive(pid, Some(start)) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    assert!(!alive(pid, Some(start)), "a killed, unreaped child is dead");
                    child.wait().unwrap();
                    assert!(!alive(pid, Some(start)));
                    assert!(!alive(pid, None));
                }

                #[test]
                fn the_parent_of_a_child_is_this_process() {
                    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
                    let parent = b::parent(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    assert_eq!(parent, Some(std::process::id()));
                    assert_eq!(b::parent(u32::MAX - 1), None);
                }

                #[test]
                fn memory_and_cpu_time_of_a_process() {
                    let me = std::process::id();
                    assert!(
                        b::rss_bytes(me).unwrap() > 1024 * 1024,
                        "over 1 MiB resident"
                    );
                    let before = b::cpu_time(me).unwrap();
                    // Burn some CPU so the counter must move.
                    let spin = Instant::now();
                    let mut x = 0u64;
                    while spin.elapsed() < Duration::from_millis(300) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    let after = b::cpu_time(me).unwrap();
                    assert!(after > before, "cpu time {before:?} -> {after:?}");
                    assert!(after < Duration::from_secs(24 * 3600));
                }

                #[test]
                fn host_memory_and_load() {
                    let m = b::host_memory().unwrap();
                    assert!(m.total > 64 * 1024 * 1024, "{m:?}");
                    let avail = m.available.unwrap();
                    assert!(avail > 0 && avail <= m.total, "{m:?}");
                    let l = b::load_average().unwrap();
                    assert!(l.iter().all(|x| x.is_finite() && *x >= 0.0), "{l:?}");
                }

                #[test]
                fn finds_own_processes_by_an_environment_variable() {
                    let name = format!("AI_SESSIONS_PROCINFO_TEST_{}", std::process::id());
                    let value = format!("{}-marker", stringify!($name));
                    let mut marked = Command::new("sleep")
                        .arg("30")
                        .env(&name, &value)
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    let mut plain = Command::new("sleep").arg("30").spawn().unwrap();
                    let found = b::own_processes_with_env(&name);
                    let _ = marked.kill();
                    let _ = plain.kill();
                    let _ = marked.wait();
                    let _ = plain.wait();
                    assert!(found.contains(&(marked.id(), value)), "{found:?}");
                    assert!(!found.iter().any(|(p, _)| *p == plain.id()), "{found:?}");
                }
            }
        };
    }

    #[cfg(target_os = "linux")]
    backend_tests!(linux, crate::core::procinfo::linux);

    #[test]
    fn ancestors_are_the_parent_chain_only() {
        let parent = nix::unistd::getppid().as_raw() as u32;
        assert!(super::is_ancestor(parent));
        assert!(!super::is_ancestor(std::process::id()), "not its own");
        assert!(!super::is_ancestor(1), "init never counts");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let not_ours = super::is_ancestor(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(!not_ours, "a child is no ancestor");
    }
    backend_tests!(portable, crate::core::procinfo::portable);

    #[test]
    fn alive_needs_a_live_non_zombie_with_the_same_start() {
        use super::{alive_from, ProcState};
        let s = |start, zombie| Some(ProcState { start, zombie });
        assert!(alive_from(s(5, false), Some(5)));
        assert!(alive_from(s(5, false), None));
        assert!(!alive_from(s(5, false), Some(6)));
        assert!(!alive_from(s(5, true), Some(5)));
        assert!(!alive_from(None, None));
    }
}
