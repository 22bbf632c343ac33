//! `doctor`: each part the product needs, OK or what to do.

use super::Ctx;
use crate::error::Result;
use crate::runtime::docker::DockerEngine;
use std::os::unix::fs::PermissionsExt;

pub fn doctor(ctx: &Ctx) -> Result<u8> {
    let on = crate::output::color_stdout();
    let mut problems = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        let mark = if ok {
            crate::output::paint("ok  ", "32", on)
        } else {
            problems += 1;
            crate::output::paint("FIX ", "31", on)
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
            report(true, "config", ctx.dirs.config().display().to_string());
            Some(s)
        }
        Err(e) => {
            report(false, "config", e.to_string());
            None
        }
    };
    let engine = match DockerEngine::connect() {
        Ok(e) => {
            report(
                true,
                "engine",
                e.version().unwrap_or_else(|_| "answering".into()),
            );
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
    };
    for (name, agent) in settings.iter().flat_map(|s| s.agents.iter()) {
        if let Some(engine) = &engine {
            match engine.image_exists(&agent.image) {
                Ok(true) => report(true, &format!("{name} image"), agent.image.clone()),
                _ => report(
                    false,
                    &format!("{name} image"),
                    format!("{} missing: `ai-sessctl image build {name}`", agent.image),
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
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let hooked: Vec<&str> = [".zshrc", ".bashrc"]
        .into_iter()
        .filter(|rc| {
            std::fs::read_to_string(home.join(rc)).is_ok_and(|t| t.contains("ai-sessctl init"))
        })
        .collect();
    report(
        !hooked.is_empty(),
        "shell integration",
        if hooked.is_empty() {
            "not set up: add `eval \"$(ai-sessctl init zsh)\"` to ~/.zshrc (or bash to ~/.bashrc)"
                .into()
        } else {
            format!("in ~/{}", hooked.join(", ~/"))
        },
    );
    Ok(if problems == 0 { 0 } else { 1 })
}
