//! A private tmux server driving one real interactive shell, for tests
//! that type into zsh/bash as a user does (copied from the harness in
//! shell_integration.rs, which keeps its own).
#![allow(dead_code)]

use crate::common::wait_until;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Generous: a container start and attach takes seconds when parallel test
/// binaries load the machine.
pub const POLL: Duration = Duration::from_secs(30);

static SOCKETS: AtomicU32 = AtomicU32::new(0);

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips loudly without `tools`; fails when CI says they must be here.
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed and AI_SESSIONS_REQUIRE_DOCKER=1");
    }
    eprintln!("\n*** SKIPPED {test}: {missing:?} not installed ***\n");
    false
}

/// Shell single-quoting.
pub fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------- tmux

/// One interactive shell in a private tmux server (`tmux -L <unique>`),
/// 200x50; the server is killed on drop.
pub struct Tmux {
    sock: String,
    evals: std::cell::Cell<u32>,
}

impl Tmux {
    /// Starts `argv` (run through `env -i` with exactly `envs`) in `cwd`.
    pub fn start(cwd: &Path, envs: &[(String, String)], argv: &[&str]) -> Tmux {
        let n = SOCKETS.fetch_add(1, Ordering::SeqCst);
        let t = Tmux {
            sock: format!("ais-fh-{}-{n}", std::process::id()),
            evals: std::cell::Cell::new(0),
        };
        let mut c = t.cmd();
        c.args(["-f", "/dev/null", "new-session", "-d", "-s", "s"])
            .args(["-x", "200", "-y", "50", "-c"])
            .arg(cwd)
            .args(["--", "env", "-i"]);
        for (k, v) in envs {
            c.arg(format!("{k}={v}"));
        }
        c.args(argv);
        let out = c.output().expect("tmux");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.sock])
            .env_remove("TMUX")
            .stdin(Stdio::null());
        c
    }

    pub fn tmux(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("tmux")
    }

    /// Types `text` literally (no key names, nothing interpreted).
    pub fn type_text(&self, text: &str) {
        // tmux takes an argument ending in ';' as a command separator.
        assert!(!text.ends_with(';'), "typed text must not end with ';'");
        self.tmux(&["send-keys", "-t", "=s:", "-l", "--", text]);
    }

    /// Sends named keys (`Enter`, `Tab`, `C-p`, …).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "=s:"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// The pane with its scrollback, wrapped lines joined.
    pub fn capture(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", "-3000", "-t", "=s:"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn last_line(&self) -> String {
        self.capture()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    }

    pub fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "=s"]).status.success()
    }

    /// Polls the pane until `pred` holds; panics with the pane otherwise.
    pub fn wait(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + POLL;
        loop {
            let pane = self.capture();
            if pred(&pane) {
                return pane;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {POLL:?} waiting for {what}; pane:\n{}",
                    pane.trim_end()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_text(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), |p| p.contains(text))
    }

    /// Waits until `text` is on screen `n` times (it may be there from
    /// earlier steps).
    pub fn wait_count(&self, text: &str, n: usize) {
        self.wait(&format!("{text:?} {n} times"), |p| {
            p.matches(text).count() >= n
        });
    }

    /// Runs `printf '<<%s|%s>>\n' KEY "<expr>"` (KEY unique) and returns
    /// the expansion of `expr`. The typed line holds `%s`, never `<<KEY|`,
    /// so only the output matches.
    pub fn eval(&self, expr: &str) -> String {
        let n = self.evals.get() + 1;
        self.evals.set(n);
        self.line(&format!("printf '<<%s|%s>>\\n' e{n} \"{expr}\""));
        let start = format!("<<e{n}|");
        let pane = self.wait(&format!("output of {expr}"), |p| {
            p.lines()
                .any(|l| l.contains(&start) && l.trim_end().ends_with(">>"))
        });
        let l = pane.lines().find(|l| l.contains(&start)).unwrap();
        let rest = &l[l.find(&start).unwrap() + start.len()..];
        rest.trim_end().trim_end_matches(">>").to_owned()
    }

    pub fn wait_gone(&self) {
        assert!(
            wait_until(POLL, || !self.alive()),
            "the shell did not exit; pane:\n{}",
            self.capture()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // tmux leaves its socket file behind.
        let dir = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".into());
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(Path::new(&dir).join(format!("tmux-{uid}")).join(&self.sock));
    }
}
