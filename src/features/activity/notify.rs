//! Notifications when an agent needs the user: an instance that turns
//! `waiting` or `idle` while no terminal is attached to it runs
//! `alerts.command`, rings the bell and sends a desktop notification
//! (OSC 777 and OSC 9) to the terminal of the shell that owns it, and logs
//! an event (the dashboard and the API's event stream show it). Which
//! activities notify is per agent (`[agents.<mode>] notify`); a second
//! notification of the same instance within `alerts.activity_debounce` is
//! dropped.

use crate::core::error::Result;
use crate::core::types::{Activity, InstanceId};
use crate::state::context::Ctx;
use crate::state::events::Level;
use crate::state::registry::Instance;
use serde_json::json;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

/// Held (shared) by every process attached to an instance's terminal.
fn attach_lock(ctx: &Ctx, id: &InstanceId) -> PathBuf {
    super::dir_of(&ctx.dirs, id).join("attach.lock")
}

/// Says "a terminal is attached to `id`" for as long as it lives.
pub struct Attached(#[allow(dead_code)] Option<File>);

pub fn attached_guard(ctx: &Ctx, id: &InstanceId) -> Attached {
    hold_shared(&attach_lock(ctx, id))
}

/// Whether some process holds the attach lock of `id`.
pub fn is_attached(ctx: &Ctx, id: &InstanceId) -> bool {
    is_held(&attach_lock(ctx, id))
}

// The lock lives in the agent's activity directory, which it can write: a
// FIFO or a symlink in its place must neither block us nor be followed
// (see crate::core::untrusted), and a lock the box holds on it must not block
// us either (a blocking `LOCK_SH` hung `attach` for as long as the box
// held `LOCK_EX`); without the lock, notifications still come.
fn hold_shared(path: &std::path::Path) -> Attached {
    let file = crate::core::untrusted::open_lock(path, true);
    if let Some(f) = &file {
        // SAFETY: flock on a descriptor we own; released when it closes.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    }
    Attached(file)
}

fn is_held(path: &std::path::Path) -> bool {
    let Some(f) = crate::core::untrusted::open_lock(path, false) else {
        return false;
    };
    // SAFETY: as above; a lock we get is dropped at once.
    let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if got {
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    !got
}

/// Per watcher: when each instance was last notified (for the debounce).
#[derive(Default)]
pub struct Notifier {
    last: HashMap<InstanceId, Instant>,
}

impl Notifier {
    /// Looks at every live instance whose current activity has not been
    /// considered yet; notifies where due and records that it looked.
    pub fn run(&mut self, ctx: &Ctx) -> Result<usize> {
        let reg = ctx.store.load()?;
        let due: Vec<Instance> = reg
            .instances
            .values()
            .filter(|i| i.status.is_live() && i.activity_since.is_some())
            .filter(|i| i.activity_notified != i.activity_since)
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        ctx.store.update(|reg| {
            for d in &due {
                if let Some(i) = reg.instances.get_mut(&d.id) {
                    if i.activity_since == d.activity_since {
                        i.activity_notified = d.activity_since;
                    }
                }
            }
            Ok(())
        })?;
        let settings = ctx.global()?;
        let mut sent = 0;
        for inst in &due {
            if !inst.activity.wants_user() {
                continue;
            }
            let wanted = ctx
                .effective(&inst.id)
                .map(|e| e.agent.notify.contains(&inst.activity))
                .unwrap_or(true);
            if !wanted || is_attached(ctx, &inst.id) {
                continue;
            }
            let window = settings.alerts.activity_debounce.0;
            if self
                .last
                .get(&inst.id)
                .is_some_and(|t| t.elapsed() < window)
            {
                continue;
            }
            self.last.insert(inst.id.clone(), Instant::now());
            notify(ctx, &settings, inst);
            sent += 1;
        }
        Ok(sent)
    }
}

fn message(inst: &Instance) -> String {
    let what = match inst.activity {
        Activity::Waiting => "needs you",
        Activity::Idle => "is done",
        _ => "changed",
    };
    // The path, not the name: two `api`s are told apart, as in `list`.
    format!(
        "{} ({}) {what}",
        inst.id,
        crate::core::paths::home_shown(&inst.project_path)
    )
}

fn notify(ctx: &Ctx, settings: &crate::state::config::Settings, inst: &Instance) {
    let msg = message(inst);
    ctx.events().log(
        Level::Warn,
        "activity",
        &msg,
        json!({"alert": "ACTIVITY", "instance": inst.id, "activity": inst.activity,
               "project": inst.project_path}),
    );
    if settings.alerts.terminal {
        if let Some(pid) = inst.owner_pid {
            terminal(pid, inst.owner_start_time, &msg);
        }
    }
    let Some(argv) = settings.alerts.command.as_ref().filter(|a| !a.is_empty()) else {
        return;
    };
    let env = [
        ("AI_ALERT_KIND", "ACTIVITY".to_owned()),
        ("AI_ALERT_LEVEL", "info".to_owned()),
        ("AI_ALERT_INSTANCE", inst.id.to_string()),
        ("AI_ALERT_MESSAGE", msg.clone()),
        ("AI_INSTANCE_ID", inst.id.to_string()),
        ("AI_PROJECT", inst.project_path.clone()),
        ("AI_PROJECT_NAME", inst.project_name.clone()),
        ("AI_MODE", inst.mode.to_string()),
        ("AI_ACTIVITY", inst.activity.to_string()),
    ];
    let stdin = json!({"kind": "ACTIVITY", "instance": inst.id, "project": inst.project_path,
                       "mode": inst.mode, "activity": inst.activity, "message": msg})
    .to_string();
    if let Err(e) =
        crate::core::spawn::run_program(argv, &env, &stdin, settings.alerts.command_timeout.0)
    {
        ctx.events().log(
            Level::Warn,
            "activity",
            "alert command failed",
            json!({"error": e}),
        );
    }
}

/// The bell and a desktop notification on the terminal of the shell that
/// owns `inst`, when `alerts.terminal` is on: the "needs you" path, for
/// other alerts (a budget nearly spent) as well.
pub fn to_owner(settings: &crate::state::config::Settings, inst: &Instance, msg: &str) {
    if settings.alerts.terminal {
        if let Some(pid) = inst.owner_pid {
            terminal(pid, inst.owner_start_time, msg);
        }
    }
}

/// The bell and a desktop notification (OSC 777, then OSC 9; terminals
/// ignore the one they do not know) written to the terminal of `pid`.
fn terminal(pid: u32, start_time: Option<u64>, msg: &str) {
    if !crate::core::procinfo::alive(pid, start_time) {
        return;
    }
    let Some(tty) = tty_of(pid) else { return };
    let clean: String = msg
        .chars()
        .filter(|c| !c.is_control() && *c != ';')
        .collect();
    let seq = format!("\x07\x1b]777;notify;ai-sessions;{clean}\x1b\\\x1b]9;{clean}\x1b\\");
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&tty)
    {
        let _ = f.write_all(seq.as_bytes());
    }
}

/// The terminal device on `pid`'s stdin/stderr, if it is one.
fn tty_of(pid: u32) -> Option<PathBuf> {
    [0, 2].iter().find_map(|fd| {
        let p = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        let s = p.to_str()?;
        (s.starts_with("/dev/pts/") || s.starts_with("/dev/tty")).then_some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `f` on another thread; false when it has not returned in 10 s.
    fn returns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
    }

    #[test]
    fn a_planted_fifo_or_symlink_lock_neither_blocks_nor_is_followed() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("attach.lock");
        nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let p = lock.clone();
        assert!(returns(move || hold_shared(&p)), "attach blocked on a FIFO");
        let p = lock.clone();
        assert!(
            returns(move || is_held(&p)),
            "the watcher blocked on a FIFO"
        );
        std::fs::remove_file(&lock).unwrap();
        let target = d.path().join("host-file");
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let g = hold_shared(&lock);
        assert!(!target.exists(), "created through a symlink");
        drop(g);
        std::fs::remove_file(&lock).unwrap();
        let g = hold_shared(&lock);
        assert!(is_held(&lock), "a real lock still works");
        drop(g);
        assert!(!is_held(&lock));
    }

    #[test]
    fn the_owner_terminal_gets_the_bell_and_a_desktop_notification() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .stdin(slave)
            .spawn()
            .unwrap();
        terminal(child.id(), None, "api-claude (api) needs you; now\x1b[2J");
        let mut master = std::fs::File::from(pty.master);
        let mut buf = [0u8; 256];
        let n = master.read(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let _ = child.kill();
        let _ = child.wait();
        assert!(got.starts_with('\x07'), "{got:?}");
        assert!(
            got.contains("\x1b]777;notify;ai-sessions;api-claude (api) needs you now[2J\x1b\\"),
            "control characters and ';' stripped: {got:?}"
        );
        assert!(got.contains("\x1b]9;api-claude"), "{got:?}");
    }
}
