//! Hook settings that make the shipped agents report their activity,
//! generated per instance and handed to the agent without touching the
//! user's own settings: Claude Code takes them with `--settings FILE`
//! (merged over the user's), Gemini CLI as its system defaults file
//! (`GEMINI_CLI_SYSTEM_DEFAULTS_PATH`, the lowest layer: hooks of every
//! layer run, the user's settings win everywhere else).

use crate::core::error::Result;
use crate::core::types::Activity;
use crate::state::config::HookKind;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const CLAUDE_FILE: &str = "claude-settings.json";
/// Where gemini's file is placed inside the container. Gemini CLI skips
/// (with a "Security Warning" on every start) a system file that is not
/// owned by root or sits in a directory that is not, so it cannot live on
/// the activity mount (owned by the user): it is copied into the
/// container, owned by root, before the agent starts.
pub const GEMINI_PATH: &str = "/etc/ai-sessions/gemini-system-defaults.json";
pub const GEMINI_ENV: &str = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH";
/// The name gemini shows while the hook runs and takes in
/// `/hooks disable NAME`.
pub const GEMINI_HOOK_NAME: &str = "ai-sessions-activity";

/// Single-quoted for sh.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell command a hook runs: the word into the status file, never a
/// failure that the agent would report. Claude's hooks find the file by
/// `AI_SESSION_STATUS_FILE`; gemini's name it (gemini may run hooks with a
/// redacted environment) and print `{}` (it reads a hook's stdout as
/// JSON: `{}` says nothing).
fn command(a: Activity, kind: HookKind, status: &str) -> String {
    if kind == HookKind::Gemini {
        format!(
            "printf '{a}\\n' 2>/dev/null >{}; printf '{{}}'; exit 0",
            quoted(status)
        )
    } else {
        format!(
            "[ -n \"${{AI_SESSION_STATUS_FILE:-}}\" ] && printf '{a}\\n' >\"$AI_SESSION_STATUS_FILE\" 2>/dev/null; exit 0"
        )
    }
}

fn group(a: Activity, kind: HookKind, status: &str, matcher: Option<&str>) -> Value {
    let hook = match kind {
        // Gemini: milliseconds, and a name.
        HookKind::Gemini => json!({
            "name": GEMINI_HOOK_NAME, "type": "command",
            "command": command(a, kind, status), "timeout": 5000,
        }),
        // Claude Code: seconds.
        _ => json!({"type": "command", "command": command(a, kind, status), "timeout": 5}),
    };
    let mut g = json!({ "hooks": [hook] });
    if let Some(m) = matcher {
        g["matcher"] = json!(m);
    }
    g
}

/// Claude Code's `PreToolUse` hook: its question tool (`AskUserQuestion`)
/// waits for the user, any other tool works. One command that reads the
/// event (JSON on stdin) rather than two matcher groups: Claude Code runs
/// every matching group at once, so a generic `working` group would race a
/// specific `waiting` one for the last word.
fn claude_pre_tool() -> Value {
    let cmd = format!(
        "case \"$(cat)\" in *'\"tool_name\":\"{q}\"'*|*'\"tool_name\": \"{q}\"'*) w={wait} ;; *) w={work} ;; esac; \
         [ -n \"${{AI_SESSION_STATUS_FILE:-}}\" ] && printf '%s\\n' \"$w\" >\"$AI_SESSION_STATUS_FILE\" 2>/dev/null; exit 0",
        q = CLAUDE_QUESTION_TOOL,
        wait = Activity::Waiting,
        work = Activity::Working,
    );
    json!({"matcher": "*", "hooks": [{"type": "command", "command": cmd, "timeout": 5}]})
}

/// Claude Code's tool that asks the user a question.
pub const CLAUDE_QUESTION_TOOL: &str = "AskUserQuestion";

/// Claude Code: `PermissionRequest` (its permission dialog is up), a
/// `Notification` of a permission prompt or an MCP server's question, and
/// `PreToolUse` of its question tool → waiting, at once; `SessionStart`
/// (its prompt is up) and `Stop` (the turn ended) → idle; a prompt
/// submitted, any other tool about to run, and `PostToolUse` (a tool ran:
/// the answer came) → working. Its idle notification (`idle_prompt`, a
/// minute after a turn) is not waiting: the agent is idle.
pub fn claude_settings() -> Value {
    let k = HookKind::Claude;
    json!({
        "hooks": {
            "SessionStart": [group(Activity::Idle, k, "", None)],
            "UserPromptSubmit": [group(Activity::Working, k, "", None)],
            "PreToolUse": [claude_pre_tool()],
            "PermissionRequest": [group(Activity::Waiting, k, "", Some("*"))],
            "PostToolUse": [group(Activity::Working, k, "", Some("*"))],
            "Notification": [group(
                Activity::Waiting,
                k,
                "",
                Some("permission_prompt|elicitation_dialog"),
            )],
            "Stop": [group(Activity::Idle, k, "", None)],
        }
    })
}

/// Gemini CLI, writing into `status` (the path inside the container):
/// `BeforeAgent` (a prompt submitted), `BeforeTool`, `AfterTool` (a tool
/// ran, after a permission answer too) → working; `Notification` (a
/// tool's permission prompt) → waiting; `AfterAgent` (the turn ended) →
/// idle.
pub fn gemini_settings(status: &str) -> Value {
    let k = HookKind::Gemini;
    json!({
        "hooks": {
            "BeforeAgent": [group(Activity::Working, k, status, None)],
            "BeforeTool": [group(Activity::Working, k, status, Some("*"))],
            "AfterTool": [group(Activity::Working, k, status, Some("*"))],
            "Notification": [group(Activity::Waiting, k, status, None)],
            "AfterAgent": [group(Activity::Idle, k, status, None)],
        }
    })
}

/// The Gemini CLI takes a `GOOGLE_GEMINI_BASE_URL` for a gateway of its
/// own auth type, which `-p` refuses ("Invalid auth method selected"):
/// its system defaults select the API key, which honours the base URL too.
pub fn gemini_key_auth(plan: &mut crate::launch::LaunchPlan) {
    let at = plan.files.iter().position(|(p, _)| p == GEMINI_PATH);
    let mut settings = at
        .and_then(|i| serde_json::from_slice::<serde_json::Value>(&plan.files[i].1).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    settings["security"]["auth"]["selectedType"] = "gemini-api-key".into();
    let bytes = to_bytes(&settings);
    match at {
        Some(i) => plan.files[i].1 = bytes,
        None => {
            plan.files.push((GEMINI_PATH.to_owned(), bytes));
            plan.agent
                .env
                .push(format!("{}={}", GEMINI_ENV, GEMINI_PATH));
        }
    }
}

/// Pretty JSON with a final newline.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes Claude Code's settings file into `dir`; its path.
pub fn write_claude(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(CLAUDE_FILE);
    crate::core::paths::atomic_write(&path, &to_bytes(&claude_settings()))?;
    Ok(path)
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
        assert_eq!(crate::features::activity::read(&f), Some(Activity::Waiting));
        // No status file named: nothing written, still success.
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env_remove("AI_SESSION_STATUS_FILE")
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// Runs a hook's command with the event on stdin.
    fn run_with_event(cmd: &str, file: &Path, event: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env("AI_SESSION_STATUS_FILE", file)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(event.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn claude_waits_on_a_permission_or_its_question_tool_and_works_after() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("status");
        let v = claude_settings();
        let cmd = |event: &str| {
            v["hooks"][event][0]["hooks"][0]["command"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let pre = cmd("PreToolUse");
        for (event, want) in [
            (
                r#"{"hook_event_name":"PreToolUse","tool_name":"AskUserQuestion"}"#,
                Activity::Waiting,
            ),
            (
                r#"{"hook_event_name":"PreToolUse","tool_name":"Edit"}"#,
                Activity::Working,
            ),
            (
                r#"{"tool_name": "AskUserQuestion", "x": 1}"#,
                Activity::Waiting,
            ),
            ("not json", Activity::Working),
        ] {
            run_with_event(&pre, &f, event);
            assert_eq!(crate::features::activity::read(&f), Some(want), "{event}");
        }
        run_with_event(&cmd("PermissionRequest"), &f, "{}");
        assert_eq!(crate::features::activity::read(&f), Some(Activity::Waiting));
        run_with_event(&cmd("PostToolUse"), &f, "{}");
        assert_eq!(crate::features::activity::read(&f), Some(Activity::Working));
        // The idle notification says nothing: only the prompts that ask.
        let m = v["hooks"]["Notification"][0]["matcher"].as_str().unwrap();
        assert!(
            m.contains("permission_prompt") && !m.contains("idle_prompt"),
            "{m}"
        );
    }

    #[test]
    fn gemini_hooks_name_the_status_file_and_time_out_in_milliseconds() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("it's status");
        let g = gemini_settings(&f.to_string_lossy());
        for (event, word) in [
            ("BeforeAgent", Activity::Working),
            ("Notification", Activity::Waiting),
            ("AfterAgent", Activity::Idle),
            ("AfterTool", Activity::Working),
        ] {
            let hook = &g["hooks"][event][0]["hooks"][0];
            assert_eq!(hook["timeout"], 5000, "gemini counts milliseconds");
            assert_eq!(hook["name"], GEMINI_HOOK_NAME);
            let cmd = hook["command"].as_str().unwrap();
            // Found without the variable (a redacted environment).
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .env_remove("AI_SESSION_STATUS_FILE")
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, b"{}", "gemini reads stdout as JSON");
            assert_eq!(crate::features::activity::read(&f), Some(word), "{event}");
        }
        // A status file that cannot be written: still success, still `{}`.
        let g = gemini_settings("/nonexistent/dir/status");
        let cmd = g["hooks"]["AfterAgent"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{}");
    }
}
