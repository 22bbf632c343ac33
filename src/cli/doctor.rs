//! `doctor`: each part the product needs, OK or what to do.

use super::Ctx;
use crate::core::error::Result;
use crate::lifecycle::docker::DockerEngine;
use std::os::unix::fs::PermissionsExt;

/// The config file, or that there is none yet: the built-in defaults
/// apply, which is fine, but no file is to be named as if it were there.
fn config_said(ctx: &Ctx) -> String {
    let path = ctx.dirs.config();
    if path.exists() {
        path.display().to_string()
    } else {
        format!(
            "built-in defaults (no {} yet; `ai-sessctl config set --global KEY VALUE` writes it)",
            path.display()
        )
    }
}

pub fn doctor(ctx: &Ctx) -> Result<u8> {
    let on = crate::cli::output::color_stdout();
    let mut problems = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        let mark = if ok {
            crate::cli::output::paint("ok  ", "32", on)
        } else {
            problems += 1;
            crate::cli::output::paint("FIX ", "31", on)
        };
        println!("{mark} {what}: {detail}");
    };

    let root = ctx.dirs.root();
    match std::fs::metadata(root) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            report(
                mode & 0o077 == 0,
                "state dir",
                format!("{} (mode {mode:o})", root.display()),
            );
        }
        Err(_) => report(
            true,
            "state dir",
            format!("{} (created on first use)", root.display()),
        ),
    }
    match ctx.store.load() {
        Ok(r) => report(true, "registry", format!("{} instances", r.instances.len())),
        Err(e) => report(
            false,
            "registry",
            format!("{e}; run `ai-sessctl registry repair`"),
        ),
    }
    let settings = match ctx.global() {
        Ok(s) => {
            report(true, "config", config_said(ctx));
            Some(s)
        }
        Err(e) => {
            report(false, "config", e.to_string());
            None
        }
    };
    let engine = engine_check(&mut report);
    for (name, agent) in settings.iter().flat_map(|s| s.agents.iter()) {
        if let Some(engine) = &engine {
            match engine.image_exists(&agent.image) {
                Ok(true) => report(true, &format!("{name} image"), agent.image.clone()),
                _ => report(
                    false,
                    &format!("{name} image"),
                    format!(
                        "{} missing: `ai-sessctl image build {name}` ({})",
                        agent.image,
                        crate::service::image::ways_out(name)
                    ),
                ),
            }
        }
        match agent.command.first().map(which::which) {
            Some(Ok(p)) => report(true, &format!("{name} on host"), p.display().to_string()),
            _ => {
                println!("--   {name} on host: not installed (only needed for runtime = \"host\")")
            }
        }
    }
    for probe in shell_probes() {
        let ok = probe.loaded && probe.on_path;
        if !ok && !probe.in_use {
            println!("--   {}: {}", probe.name, probe.detail());
            continue;
        }
        report(ok, &probe.name, probe.detail());
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

/// The engine's line (and, for one on another machine, what a start
/// there does); the engine when it answers.
fn engine_check(report: &mut impl FnMut(bool, &str, String)) -> Option<DockerEngine> {
    match DockerEngine::connect() {
        Ok(e) => {
            let version = e.version().unwrap_or_else(|_| "answering".into());
            let ep = crate::engine::endpoint::current().ok();
            let at = ep
                .as_ref()
                .map(|ep| format!(" at {ep}"))
                .unwrap_or_default();
            report(true, "engine", format!("{version}{at}"));
            if let Some(why) = ep.and_then(|ep| ep.mount_refusal()) {
                println!(
                    "--   project: {why}: each instance gets a clone of the repository there \
                     (`ai-sessctl fetch ID` brings its work back, `ai-sessctl port ID` reaches its port)"
                );
            }
            Some(e)
        }
        Err(e) => {
            report(
                false,
                "engine",
                format!("{e}; start it, or set global.runtime = \"host\""),
            );
            None
        }
    }
}

/// What a new shell of one kind loads, found by asking that shell (an
/// interactive one, reading the user's rc files as a new terminal would).
struct ShellProbe {
    name: String,
    rc: &'static str,
    kind: crate::cli::ShellKind,
    /// bash's login file, read by sh too (its line checks for bash).
    login: bool,
    /// The user's login shell, or its rc file exists: a failure matters.
    in_use: bool,
    loaded: bool,
    /// Loaded from the cached copy of `init` (no fork at shell start).
    cached: bool,
    on_path: bool,
    answered: bool,
}

impl ShellProbe {
    fn detail(&self) -> String {
        if !self.answered {
            format!(
                "no answer from a new {} (its rc files may wait for input)",
                self.name
            )
        } else if !self.loaded {
            let bin = std::env::current_exe()
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned))
                .unwrap_or_else(|| "ai-sessctl".into());
            format!(
                "not loaded: run ./install.sh, or add this line to {}:\n       {}",
                self.rc,
                crate::service::shell::rc_line(self.kind, &bin, self.login)
            )
        } else if !self.on_path {
            format!(
                "loaded, but `ai-sessctl` is not on PATH there: add its directory to PATH in {}",
                self.rc
            )
        } else if !self.cached {
            format!(
                "loaded by new shells ({}), through a run of `ai-sessctl init` at each start; the line ./install.sh writes loads its cached copy instead",
                self.rc
            )
        } else {
            format!("loaded by new shells ({})", self.rc)
        }
    }
}

/// Marker lines the probe prints; the rc files may print anything else.
const PROBE: &str =
    "if typeset -f _ai_sessions_precmd >/dev/null 2>&1; then echo AIS_PROBE:loaded; fi; \
                     if command -v ai-sessctl >/dev/null 2>&1; then echo AIS_PROBE:path; fi; \
                     if [ -n \"${_AI_SESSIONS_CACHED-}\" ]; then echo AIS_PROBE:cached; fi";

fn shell_probes() -> Vec<ShellProbe> {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let login = std::env::var("SHELL").unwrap_or_default();
    let login = login.rsplit('/').next().unwrap_or("");
    use crate::cli::ShellKind;
    let kinds: [(&str, &str, &[&str], &'static str, ShellKind); 3] = [
        ("zsh", "zsh", &["-i"], "~/.zshrc", ShellKind::Zsh),
        ("bash", "bash", &["-i"], "~/.bashrc", ShellKind::Bash),
        (
            "bash login shell",
            "bash",
            &["-l", "-i"],
            "~/.bash_profile or ~/.profile",
            ShellKind::Bash,
        ),
    ];
    let mut out = Vec::new();
    for (name, program, flags, rc, kind) in kinds {
        let Ok(path) = which::which(program) else {
            continue;
        };
        let rc_file = if program == "zsh" {
            ".zshrc"
        } else {
            ".bashrc"
        };
        let in_use = login == program || home.join(rc_file).exists();
        let mut answer = ask_shell(&path, flags);
        let says = |a: &Option<String>, what: &str| {
            a.as_deref()
                .is_some_and(|a| a.contains(&format!("AIS_PROBE:{what}")))
        };
        if says(&answer, "loaded") && !says(&answer, "cached") {
            // A stale cache is rewritten by the shell that finds it: ask again.
            answer = ask_shell(&path, flags);
        }
        out.push(ShellProbe {
            name: name.to_owned(),
            rc,
            kind,
            login: flags.contains(&"-l"),
            in_use,
            cached: says(&answer, "cached"),
            loaded: answer
                .as_deref()
                .is_some_and(|a| a.contains("AIS_PROBE:loaded")),
            on_path: answer
                .as_deref()
                .is_some_and(|a| a.contains("AIS_PROBE:path")),
            answered: answer.is_some(),
        });
    }
    out
}

/// Runs the probe in a new interactive shell; `None` when it does not
/// finish within a few seconds (it is killed then).
fn ask_shell(shell: &std::path::Path, flags: &[&str]) -> Option<String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(shell)
        .args(flags)
        .args(["-c", PROBE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read while it runs: an rc file that prints a lot must not block it.
    let mut out = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    // A background job of the rc file may keep the pipe open: the probe's
    // lines are printed before the shell exits, so a short wait suffices.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let text = if reader.is_finished() {
        reader.join().ok()?
    } else {
        return None;
    };
    Some(text)
}
