//! The one tmux driver: a private tmux server running one program in a
//! terminal (a real interactive zsh or bash, `top`, an agent's TUI), for
//! tests that type into it and read the screen as a user does; and the one
//! name for the shells the plugin supports (`Shell`).
#![allow(dead_code)]

use crate::common::wait_until;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Generous: a container start and attach takes seconds when parallel
/// tests load the machine.
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

/// A shell the plugin supports, named one way in every test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Zsh,
    Bash,
}

impl Shell {
    /// Its program name (`zsh`, `bash`), as `init`/`completions` take it.
    pub fn name(self) -> &'static str {
        match self {
            Shell::Zsh => "zsh",
            Shell::Bash => "bash",
        }
    }

    /// Its interactive argv as a terminal starts it (`-l`: a login shell).
    pub fn interactive(self, login: bool) -> Vec<&'static str> {
        let mut argv = vec![self.name()];
        if login {
            argv.push("-l");
        }
        argv.push("-i");
        argv
    }

    /// The rc file an interactive non-login one reads in `$HOME`.
    pub fn rc_file(self) -> &'static str {
        match self {
            Shell::Zsh => ".zshrc",
            Shell::Bash => ".bashrc",
        }
    }

    /// Whether it is installed here.
    pub fn installed(self) -> bool {
        have(self.name())
    }
}

/// Shell single-quoting.
pub fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------- tmux

/// One program in a private tmux server (`tmux -L <unique>`), in a
/// 200x50 terminal unless started sized; the server is killed on drop.
pub struct Tmux {
    sock: String,
    evals: std::cell::Cell<u32>,
    poll: Duration,
}

impl Tmux {
    /// Starts `argv` (run through `env -i` with exactly `envs`) in `cwd`.
    pub fn start(cwd: &Path, envs: &[(String, String)], argv: &[&str]) -> Tmux {
        Tmux::start_sized(cwd, envs, argv, (200, 50))
    }

    /// `start` in a terminal of `(columns, rows)`.
    pub fn start_sized(
        cwd: &Path,
        envs: &[(String, String)],
        argv: &[&str],
        (cols, rows): (u16, u16),
    ) -> Tmux {
        let n = SOCKETS.fetch_add(1, Ordering::SeqCst);
        let t = Tmux {
            sock: format!("ais-tmux-{}-{n}", std::process::id()),
            evals: std::cell::Cell::new(0),
            poll: POLL,
        };
        let mut c = t.cmd();
        c.args(["-f", "/dev/null", "new-session", "-d", "-s", "s"])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string(), "-c"])
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

    /// How long `wait` and `wait_gone` wait (default `POLL`).
    pub fn with_poll(mut self, poll: Duration) -> Tmux {
        self.poll = poll;
        self
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
        self.capture_back(3000)
    }

    /// The pane with `lines` of scrollback, wrapped lines joined.
    pub fn capture_back(&self, lines: u32) -> String {
        let start = format!("-{lines}");
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", &start, "-t", "=s:"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen only (what the user sees now).
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "=s:"]);
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
        let poll = self.poll;
        let end = Instant::now() + poll;
        loop {
            let pane = self.capture();
            if pred(&pane) {
                return pane;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {poll:?} waiting for {what}; pane:\n{}",
                    pane.trim_end()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the visible screen until `pred` holds, for at most `limit`;
    /// panics with the screen and the scrollback otherwise.
    pub fn wait_screen(
        &self,
        what: &str,
        limit: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> String {
        let end = Instant::now() + limit;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {limit:?} waiting for {what}; screen:\n{s}\n--- history:\n{}",
                    self.capture_back(5000)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Resizes the terminal to `(columns, rows)`.
    pub fn resize(&self, cols: u16, rows: u16) {
        let out = self.tmux(&[
            "resize-window",
            "-t",
            "=s:",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the pane's terminal is in raw mode with signals off (`-isig`),
    /// as an attach sets it.
    pub fn signals_off(&self) -> bool {
        let tty = self.tmux(&["display-message", "-p", "-t", "=s:", "#{pane_tty}"]);
        let tty = String::from_utf8_lossy(&tty.stdout).trim().to_owned();
        let out = Command::new("stty")
            .args(["-a", "-F", &tty])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w == "-isig")
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
            wait_until(self.poll, || !self.alive()),
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
