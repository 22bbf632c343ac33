//! Hook settings that make the shipped agents report their activity,
//! generated per instance and handed to the agent without touching the
//! user's own settings: Claude Code takes them with `--settings FILE`
//! (merged over the user's), Gemini CLI as its system settings file
//! (`GEMINI_CLI_SYSTEM_SETTINGS_PATH`).

use crate::config::HookKind;
use crate::error::Result;
use crate::types::Activity;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const CLAUDE_FILE: &str = "claude-settings.json";
pub const GEMINI_FILE: &str = "gemini-settings.json";

/// The shell command a hook runs: the word into the status file, nothing
/// on stdout (Gemini reads a hook's stdout as JSON: `{}` says nothing),
/// never a failure that the agent would report.
fn command(a: Activity, kind: HookKind) -> String {
    let out = if kind == HookKind::Gemini {
        "; printf '{}'"
    } else {
        ""
    };
    format!(
        "[ -n \"${{AI_SESSION_STATUS_FILE:-}}\" ] && printf '{a}\\n' >\"$AI_SESSION_STATUS_FILE\" 2>/dev/null{out}; exit 0"
    )
}

fn group(a: Activity, kind: HookKind, matcher: Option<&str>) -> Value {
    let mut g = json!({"hooks": [{"type": "command", "command": command(a, kind), "timeout": 5}]});
    if let Some(m) = matcher {
        g["matcher"] = json!(m);
    }
    g
}

/// Claude Code: `Notification` (a permission prompt, or input awaited) →
/// waiting; `Stop` (the turn ended) → idle; a prompt submitted or a tool
/// about to run → working.
pub fn claude_settings() -> Value {
    let k = HookKind::Claude;
    json!({
        "hooks": {
            "UserPromptSubmit": [group(Activity::Working, k, None)],
            "PreToolUse": [group(Activity::Working, k, Some("*"))],
            "Notification": [group(Activity::Waiting, k, None)],
            "Stop": [group(Activity::Idle, k, None)],
        }
    })
}

/// Gemini CLI: `BeforeAgent`/`BeforeTool` → working, `Notification` →
/// waiting, `AfterAgent` → idle.
pub fn gemini_settings() -> Value {
    let k = HookKind::Gemini;
    json!({
        "hooks": {
            "BeforeAgent": [group(Activity::Working, k, None)],
            "BeforeTool": [group(Activity::Working, k, Some("*"))],
            "Notification": [group(Activity::Waiting, k, None)],
            "AfterAgent": [group(Activity::Idle, k, None)],
        }
    })
}

/// Writes the settings file for `kind` into `dir`; its path, or `None` for
/// an agent without hooks.
pub fn write(dir: &Path, kind: HookKind) -> Result<Option<PathBuf>> {
    let (name, v) = match kind {
        HookKind::Claude => (CLAUDE_FILE, claude_settings()),
        HookKind::Gemini => (GEMINI_FILE, gemini_settings()),
        HookKind::None | HookKind::Auto => return Ok(None),
    };
    let path = dir.join(name);
    let mut bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
    bytes.push(b'\n');
    crate::registry::atomic_write(&path, &bytes)?;
    Ok(Some(path))
}

/// How the agent is told about the file (`path` as the agent sees it):
/// environment and arguments.
pub fn wiring(kind: HookKind, path: &str) -> (Vec<String>, Vec<String>) {
    match kind {
        HookKind::Claude => (Vec::new(), vec!["--settings".into(), path.into()]),
        HookKind::Gemini => (
            vec![format!("GEMINI_CLI_SYSTEM_SETTINGS_PATH={path}")],
            Vec::new(),
        ),
        HookKind::None | HookKind::Auto => (Vec::new(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a hook's command as the agent would (`sh -c`), with the status
    /// file in its environment.
    fn run_hook(cmd: &str, file: &Path) -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env("AI_SESSION_STATUS_FILE", file)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn hook_commands_write_the_word_and_never_fail() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("status");
        let v = claude_settings();
        let cmd = v["hooks"]["Notification"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        assert_eq!(run_hook(cmd, &f), "");
        assert_eq!(crate::activity::read(&f), Some(Activity::Waiting));
        let g = gemini_settings();
        let cmd = g["hooks"]["AfterAgent"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        assert_eq!(run_hook(cmd, &f), "{}", "gemini reads stdout as JSON");
        assert_eq!(crate::activity::read(&f), Some(Activity::Idle));
        // No status file named: nothing written, still success.
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env_remove("AI_SESSION_STATUS_FILE")
            .output()
            .unwrap();
        assert!(out.status.success());
    }
}
