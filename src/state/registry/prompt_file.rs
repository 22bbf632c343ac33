//! `prompt.tsv`: what the shell prompt needs, precomputed on every registry
//! change so the precmd hook reads one small file with builtins only.
//! Line format: `project_path<TAB>id<TAB>mode<TAB>status<TAB>port<TAB>activity`
//! (readers accept the older five columns too). Every line is a live
//! instance; one whose activity is `waiting` needs you
//! ([`super::Instance::needs_you`]): the prompt counts those from any
//! directory (`ai:4 ?1`).

use super::Registry;
use crate::core::error::Result;
use crate::core::paths::{atomic_write, StateDir};

pub fn render(reg: &Registry) -> String {
    let mut out = String::new();
    for inst in reg.instances.values().filter(|i| i.status.is_live()) {
        // A path with a tab or newline would break the format; "-" (never
        // a $PWD) keeps the columns in place and the instance still counts.
        let path = if inst.project_path.is_empty() || inst.project_path.contains(['\t', '\n']) {
            "-"
        } else {
            inst.project_path.as_str()
        };
        out.push_str(&format!(
            "{path}\t{}\t{}\t{}\t{}\t{}\n",
            inst.id, inst.mode, inst.status, inst.port, inst.activity
        ));
    }
    out
}

pub fn write(dirs: &StateDir, reg: &Registry) -> Result<()> {
    let path = dirs.prompt_file();
    let text = render(reg);
    // Skip the write (and the prompt's re-read) when nothing changed.
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    atomic_write(&path, text.as_bytes())
}

/// The segment a prompt shows, for `ai-sessctl prompt` (starship and other
/// prompts that run a command): `ai:2 claude●`; with agents that need
/// you, wherever they run, their count after a `?`: `ai:4 ?1 claude●`.
pub fn segment(reg: &Registry, cwd: &str) -> String {
    // The same count as `list --status running`: every live instance.
    let running = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .count();
    let here: Vec<String> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live() && !i.project_path.is_empty())
        .filter(|i| {
            cwd == i.project_path
                || cwd
                    .strip_prefix(i.project_path.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|i| {
            let mark = if i.status == crate::core::types::Status::Paused {
                '◐'
            } else if i.activity == crate::core::types::Activity::Waiting {
                // Needs you (a question or a permission to answer).
                '?'
            } else {
                '●'
            };
            format!("{}{mark}", i.mode)
        })
        .collect();
    if running == 0 && here.is_empty() {
        return String::new();
    }
    let mut s = format!("ai:{running}");
    let waiting = reg.needs_you_count();
    if waiting > 0 {
        s.push_str(&format!(" ?{waiting}"));
    }
    for h in here {
        s.push(' ');
        s.push_str(&h);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two instances of two projects from JSON: `a` waiting, `b` working.
    fn two(a_status: &str) -> Registry {
        let one = |id: &str, path: &str, status: &str, activity: &str| {
            serde_json::json!({
                "id": id, "project_path": path, "project_name": "p", "mode": "claude",
                "status": status, "port": 9001, "activity": activity,
                "timestamps": {"created": "2025-12-11T10:30:00Z"},
            })
        };
        serde_json::from_value(serde_json::json!({"instances": {
            "a-claude": one("a-claude", "/src/a", a_status, "waiting"),
            "b-claude": one("b-claude", "/src/b", "running", "working"),
        }}))
        .unwrap()
    }

    #[test]
    fn the_segment_counts_who_needs_you_from_anywhere() {
        let reg = two("running");
        assert_eq!(segment(&reg, "/home/me"), "ai:2 ?1");
        assert_eq!(segment(&reg, "/src/b/lib"), "ai:2 ?1 claude●");
        assert_eq!(segment(&reg, "/src/a"), "ai:2 ?1 claude?");
        // A stopped agent's last word is history: nothing waits.
        let reg = two("stopped");
        assert_eq!(segment(&reg, "/home/me"), "ai:1");
        assert_eq!(reg.needs_you_count(), 0);
        // prompt.tsv carries the word the shells count.
        assert!(render(&two("running")).contains("\t9001\twaiting\n"));
    }
}
