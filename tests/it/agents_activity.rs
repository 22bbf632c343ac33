//! "Needs you": the activity an agent writes into `$AI_SESSION_STATUS_FILE`
//! inside its container reaches the registry, `list`, `show`, `prompt.tsv`
//! and the prompt segment; the shipped Claude Code wiring (a generated
//! settings file passed with `--settings`) is well-formed hooks settings.

use crate::common::{stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const POLL: Duration = Duration::from_secs(15);

/// Starts a detached claude instance of a fresh project; (id, container id,
/// project path).
fn start(
    env: &Env,
    name: &str,
    extra_env: &[(&str, &str)],
) -> (String, String, std::path::PathBuf) {
    docker_config(env, "");
    let name = env.unique(name);
    let proj = env.project(&name);
    let mut c = env.cmd();
    c.current_dir(&proj)
        .args(["start", "--mode", "claude", "--detach"]);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "start failed: {}", stderr(&out));
    let id = format!("{name}-claude");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    (id, cid, proj)
}

/// Writes `word` into the status file from inside the container, as the
/// agent's hook does (same user, same variable).
fn agent_says(cid: &str, word: &str) {
    docker_ok(&[
        "exec",
        cid,
        "sh",
        "-c",
        &format!("printf '{word}\\n' >\"$AI_SESSION_STATUS_FILE\""),
    ]);
}

/// Runs a command with the background watcher disabled: what it shows it
/// read itself.
fn ok_alone(env: &Env, args: &[&str]) -> String {
    let out = env
        .cmd()
        .env("AI_SESSIONS_NO_WATCHER", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn list_activity(env: &Env, id: &str) -> String {
    activity_in(&ok_alone(env, &["list", "--json"]), id)
}

/// The activity of `id` in `list --json` output.
fn activity_in(list_json: &str, id: &str) -> String {
    let v: Value = serde_json::from_str(list_json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .map(|i| i["activity"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn prompt_line(env: &Env, id: &str) -> Vec<String> {
    let text = std::fs::read_to_string(env.state().join("prompt.tsv")).unwrap_or_default();
    text.lines()
        .find(|l| l.split('\t').nth(1) == Some(id))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn plain_commands_read_the_status_file_without_a_watcher() {
    require_docker!();
    let env = Env::new();
    let (id, cid, proj) = start(&env, "act", &[("AI_SESSIONS_NO_WATCHER", "1")]);

    // Inside: the variable names a file on the mounted activity dir.
    let seen = docker_ok(&["exec", &cid, "sh", "-c", "echo \"$AI_SESSION_STATUS_FILE\""]);
    assert_eq!(seen.trim(), "/run/ai-sessions/status");
    assert_eq!(list_activity(&env, &id), "unknown", "nothing said yet");
    assert_eq!(
        prompt_line(&env, &id).get(5).map(String::as_str),
        Some("unknown")
    );

    agent_says(&cid, "waiting");
    assert_eq!(list_activity(&env, &id), "waiting");
    assert_eq!(env.instance(&id)["activity"], "waiting");
    // (a writer renames registry.json, then prompt.tsv: poll briefly)
    assert!(
        wait_until(Duration::from_secs(2), || prompt_line(&env, &id)
            .get(5)
            .map(String::as_str)
            == Some("waiting")),
        "prompt.tsv sixth column: {:?}",
        prompt_line(&env, &id)
    );
    let show = ok_alone(&env, &["show", &id]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("activity:") && l.contains("waiting")),
        "{show}"
    );
    let table = ok_alone(&env, &["list"]);
    assert!(
        table.contains("ACTIVITY") && table.contains("waiting"),
        "{table}"
    );
    let prompt = || {
        let out = env
            .cmd()
            .current_dir(&proj)
            .env("PWD", &proj)
            .env("AI_SESSIONS_NO_WATCHER", "1")
            .arg("prompt")
            .output()
            .unwrap();
        stdout(&out)
    };
    let seg = prompt();
    assert!(
        seg.contains("claude?"),
        "waiting mark in the segment: {seg:?}"
    );

    agent_says(&cid, "working");
    let seg = prompt();
    assert!(seg.contains("claude●"), "back to working: {seg:?}");
    assert_eq!(list_activity(&env, &id), "working");

    // Garbage is ignored, not recorded.
    agent_says(&cid, "sleeping");
    assert_eq!(list_activity(&env, &id), "working");
    let events = env.ok(&["events", "--json"]);
    assert!(
        events.contains("\"activity\":\"waiting\""),
        "changes are events (the API streams them): {events}"
    );
}

#[test]
fn the_watcher_turns_prompt_tsv_with_no_command_run() {
    require_docker!();
    let env = Env::new();
    let (id, cid, _proj) = start(&env, "actw", &[]);
    agent_says(&cid, "waiting");
    assert!(
        wait_until(POLL, || prompt_line(&env, &id).get(5).map(String::as_str)
            == Some("waiting")),
        "prompt.tsv: {:?}",
        prompt_line(&env, &id)
    );
    // The dashboard shows it too.
    let dash: Value = serde_json::from_str(&env.ok(&["dashboard", "--json"])).unwrap();
    let row = dash["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["activity"], "waiting", "{row}");
}

/// The hooks part of Claude Code's settings schema: an object of known
/// events, each an array of matcher groups `{matcher?: string, hooks:
/// [{type: "command", command: string, timeout?: number}]}`, nothing else.
fn check_claude_hooks(v: &Value) {
    // Events the real Claude Code knows (its binary lists them).
    const EVENTS: [&str; 10] = [
        "PreToolUse",
        "PermissionRequest",
        "PostToolUse",
        "Notification",
        "UserPromptSubmit",
        "Stop",
        "SubagentStop",
        "PreCompact",
        "SessionStart",
        "SessionEnd",
    ];
    let top = v.as_object().expect("settings are an object");
    assert!(top.keys().all(|k| k == "hooks"), "only hooks: {v}");
    let hooks = top["hooks"].as_object().expect("hooks is an object");
    for (event, groups) in hooks {
        assert!(EVENTS.contains(&event.as_str()), "unknown event {event}");
        for g in groups.as_array().expect("an event holds an array") {
            let g = g.as_object().expect("a matcher group is an object");
            for k in g.keys() {
                assert!(k == "matcher" || k == "hooks", "{event}: key {k}");
            }
            if let Some(m) = g.get("matcher") {
                assert!(m.is_string(), "{event}: matcher {m}");
            }
            let list = g["hooks"].as_array().expect("group.hooks is an array");
            assert!(!list.is_empty());
            for h in list {
                let h = h.as_object().unwrap();
                assert_eq!(h["type"], "command");
                assert!(h["command"].as_str().is_some_and(|c| !c.is_empty()));
                if let Some(t) = h.get("timeout") {
                    assert!(t.as_f64().is_some_and(|t| t > 0.0), "timeout {t}");
                }
                for k in h.keys() {
                    assert!(["type", "command", "timeout"].contains(&k.as_str()));
                }
            }
        }
    }
    for (event, want) in [
        ("Notification", "waiting"),
        ("Stop", "idle"),
        ("UserPromptSubmit", "working"),
        ("PreToolUse", "working"),
        ("PermissionRequest", "waiting"),
        ("PostToolUse", "working"),
    ] {
        let cmd = hooks[event][0]["hooks"][0]["command"].as_str().unwrap();
        assert!(cmd.contains(want), "{event} -> {want}: {cmd}");
    }
}

#[test]
fn claude_gets_a_generated_hooks_settings_file() {
    require_docker!();
    let env = Env::new();
    let (id, cid, _) = start(&env, "hooks", &[]);
    let logs = stdout(&env.run(&["logs", &id]));
    assert!(
        logs.contains("args=--settings /run/ai-sessions/claude-settings.json"),
        "claude is handed the file: {logs}"
    );
    // The file the agent reads, from inside the container.
    let text = docker_ok(&["exec", &cid, "cat", "/run/ai-sessions/claude-settings.json"]);
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    check_claude_hooks(&v);
    // It lives with the instance, not in the user's own settings.
    let host = env
        .state()
        .join("activity")
        .join(&id)
        .join("claude-settings.json");
    assert!(host.is_file());
    assert!(!Path::new(&env.state().join("states"))
        .join(&id)
        .join("settings.json")
        .exists());

    // Running a hook's command as Claude Code would (sh -c, in the
    // container) turns the instance waiting.
    let cmd = v["hooks"]["Notification"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap();
    docker_ok(&["exec", &cid, "sh", "-c", cmd]);
    assert_eq!(list_activity(&env, &id), "waiting");

    // Gemini: the same through its system defaults file, owned by root
    // (gemini reads no other; see real_gemini_hooks.rs for the real CLI).
    let out = env
        .cmd()
        .current_dir(env.project(&env.unique("hooks")))
        .args(["start", "--mode", "gemini", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let gid = format!("{}-gemini", env.unique("hooks"));
    let gcid = env.instance(&gid)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = docker_ok(&[
        "exec",
        &gcid,
        "sh",
        "-c",
        "cat \"$GEMINI_CLI_SYSTEM_DEFAULTS_PATH\"",
    ]);
    let g: Value = serde_json::from_str(&seen).unwrap();
    assert!(g["hooks"]["AfterAgent"].is_array(), "{g}");
    let owner = docker_ok(&[
        "exec",
        &gcid,
        "sh",
        "-c",
        "stat -c '%u %a' \"$GEMINI_CLI_SYSTEM_DEFAULTS_PATH\" \"$(dirname \"$GEMINI_CLI_SYSTEM_DEFAULTS_PATH\")\"",
    ]);
    assert_eq!(
        owner.split_whitespace().collect::<Vec<_>>(),
        ["0", "644", "0", "755"]
    );
    // Its hook writes the word into the status file by name.
    let cmd = g["hooks"]["Notification"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap();
    assert_eq!(docker_ok(&["exec", &gcid, "sh", "-c", cmd]), "{}");
    assert_eq!(list_activity(&env, &gid), "waiting");
}

/// `list --json` with the watcher off, killed if it has not finished
/// within a minute (a FIFO would block it forever): its activity of `id`.
fn list_activity_or_hang(env: &Env, id: &str) -> String {
    let mut child = env
        .cmd()
        .env("AI_SESSIONS_NO_WATCHER", "1")
        .args(["list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`list` blocked on the agent's status file");
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "list: {}", stderr(&out));
    activity_in(&stdout(&out), id)
}

#[test]
fn a_hostile_status_file_neither_blocks_nor_reads_a_host_file() {
    require_docker!();
    let env = Env::new();
    let (id, cid, _proj) = start(&env, "hostile", &[("AI_SESSIONS_NO_WATCHER", "1")]);
    agent_says(&cid, "waiting");
    assert_eq!(list_activity(&env, &id), "waiting");

    // A FIFO in place of the file: every command that syncs would block.
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "rm -f \"$AI_SESSION_STATUS_FILE\" && mkfifo \"$AI_SESSION_STATUS_FILE\"",
    ]);
    assert_eq!(
        list_activity_or_hang(&env, &id),
        "waiting",
        "the last good word stays"
    );

    // A symlink to a file of the host's (its path as the host sees it):
    // what it says must never reach us.
    let host_file = env.home.path().join("host-secret");
    std::fs::write(&host_file, "idle\n").unwrap();
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        &format!(
            "rm -f \"$AI_SESSION_STATUS_FILE\" && ln -s '{}' \"$AI_SESSION_STATUS_FILE\"",
            host_file.display()
        ),
    ]);
    assert_eq!(
        list_activity_or_hang(&env, &id),
        "waiting",
        "the host file's word must not be read"
    );

    // A regular file again is read again.
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "rm -f \"$AI_SESSION_STATUS_FILE\"",
    ]);
    agent_says(&cid, "working");
    assert_eq!(list_activity_or_hang(&env, &id), "working");
}

/// Waits until the registry no longer says `id` is live (after its agent
/// ended behind our back); returns the entry.
fn ended(env: &Env, id: &str) -> Value {
    let mut last = Value::Null;
    let done = wait_until(POLL, || {
        ok_alone(env, &["list", "--status", "all"]);
        last = env.instance(id);
        last["status"] != "running"
    });
    assert!(done, "{id} still running: {last:#}");
    last
}

#[test]
fn words_the_agent_plants_in_its_activity_dir_cannot_resume_it_or_break_its_next_start() {
    require_docker!();
    let env = Env::new();
    let stay = [("AI_SESSIONS_NO_WATCHER", "1"), ("FAKE_AGENT_STAY", "1")];
    let (id, cid, proj) = start(&env, "planted", &stay);

    // The agent writes a setup outcome that names "the engine", makes the
    // status file a directory, and ends by itself (a signal of its own).
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "d=$(dirname \"$AI_SESSION_STATUS_FILE\"); printf 'failed 0 engine\\n' >\"$d/setup\"; \
         rm -f \"$AI_SESSION_STATUS_FILE\"; mkdir \"$AI_SESSION_STATUS_FILE\"",
    ]);
    docker_ok(&["kill", "-s", "USR1", &cid]);
    let entry = ended(&env, &id);
    assert_ne!(entry["status"], "running");

    // What it wrote is not the engine's word: nothing to resume.
    let out = env
        .cmd()
        .env("AI_SESSIONS_NO_WATCHER", "1")
        .arg("resume")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("nothing to resume"),
        "resume took an agent that ended itself for one the engine interrupted: {} {:#}",
        stderr(&out),
        env.instance(&id)
    );

    // The next start is not broken by the directory it left.
    let mut c = env.cmd();
    c.current_dir(&proj)
        .args(["start", "--mode", "claude", "--detach"]);
    for (k, v) in stay {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "start after the plant: {}",
        stderr(&out)
    );
    assert_eq!(env.instance(&id)["status"], "running");
    assert_eq!(list_activity(&env, &id), "unknown", "a fresh status file");
    env.ok(&["stop", &id]);
}

/// The box writes its activity, and each change it makes is an event in
/// the shared event log: a box flipping it as fast as we read it must not
/// fill that log with its changes (every other event rotated out). The
/// registry keeps every change; the log keeps a burst, then a few, and the
/// next one logged counts those left out.
#[test]
fn a_box_flipping_its_activity_does_not_flood_the_event_log() {
    require_docker!();
    let env = Env::new();
    let (id, _cid, _proj) = start(&env, "flip", &[("AI_SESSIONS_NO_WATCHER", "1")]);
    // The status file as the host sees it (the same file the box writes:
    // written from here, 100 changes cost no `docker exec` each).
    let status = env.state().join("activity").join(&id).join("status");
    let changes = 100;
    for n in 0..changes {
        let word = if n % 2 == 0 { "working" } else { "idle" };
        std::fs::write(&status, format!("{word}\n")).unwrap();
        assert_eq!(list_activity(&env, &id), word, "every change is recorded");
    }
    let mine = || -> Vec<Value> {
        env.ok(&["events", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["component"] == "activity" && e["metadata"]["instance"] == id.as_str())
            .collect()
    };
    let logged = mine().len();
    assert!(
        logged < changes / 2,
        "{logged} activity events of {changes} changes logged"
    );
    // The next change logged (once the limit allows one more) says how
    // many were left out.
    let mut n = changes;
    let counted = wait_until(Duration::from_secs(60), || {
        let word = if n % 2 == 0 { "working" } else { "idle" };
        n += 1;
        std::fs::write(&status, format!("{word}\n")).unwrap();
        list_activity(&env, &id);
        mine()
            .iter()
            .filter_map(|e| e["metadata"]["dropped"].as_u64())
            .sum::<u64>()
            > 0
    });
    assert!(counted, "the changes left out are counted: {:#?}", mine());
    env.ok(&["stop", &id]);
}

/// The real Claude Code (its image, its model API the fake, through the
/// credential broker), in its plain permission mode (no `acceptEdits`):
/// the model asks to edit a file, Claude Code shows its permission dialog,
/// and the instance is `waiting` with nothing edited yet; answered, the
/// edit happens and the turn ends `idle`. Then its question tool: waiting
/// while the question is up, idle once answered. (Its `PermissionRequest`
/// and `PreToolUse` hooks say it as the dialog opens; its notification,
/// the only signal before, comes after 6 s without a key pressed: the
/// test prints how long it took, it does not time it.)
#[test]
fn the_real_claude_code_waits_the_moment_it_asks_permission() {
    use crate::broker_support::{host_address, unique_secret};
    use crate::fake_model::{FakeApi, Reply, ToolStep};
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "Nothing to do.".into(),
        ..Reply::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"1Gi\"\n\n\
         [agents.claude]\nimage = \"{image}\"\nenv_passthrough = [\"ANTHROPIC_API_KEY\"]\n\n\
         [agents.claude.credentials]\nupstream = \"http://{}:{}\"\n",
        host_address(),
        fake.port
    ));
    let key = unique_secret("sk-ant-api03-");
    let name = env.unique("askperm");
    let proj = env.project(&name);
    let file = proj.join("notes.txt");
    std::fs::write(&file, "draft\n").unwrap();
    let start = || {
        let out = env
            .cmd()
            .current_dir(&proj)
            .env("ANTHROPIC_API_KEY", &key)
            .args(["start", "--mode", "claude", "--detach"])
            // Its plain mode: this version's default ("auto") lets a
            // model call judge each tool, and the fake says yes.
            .args(["--", "--permission-mode", "default"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let id = start();
    // Claude Code's first-run questions answered in its state, as for a
    // user who used it before (see review_diff.rs).
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let placeholder = docker_ok(&["exec", &cid, "printenv", "ANTHROPIC_API_KEY"]);
    let placeholder = placeholder.trim();
    let last20 = &placeholder[placeholder.len().saturating_sub(20)..];
    env.ok(&["stop", &id]);
    let state = env.state().join("states").join(&id);
    std::fs::create_dir_all(&state).unwrap();
    let cfg = state.join(".claude.json");
    let mut v: Value = std::fs::read_to_string(&cfg)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    v["hasCompletedOnboarding"] = true.into();
    v["theme"] = "dark".into();
    v["customApiKeyResponses"] = serde_json::json!({"approved": [last20], "rejected": []});
    v["projects"][proj.to_str().unwrap()] = serde_json::json!({
        "hasTrustDialogAccepted": true,
        "hasCompletedProjectOnboarding": true,
    });
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_eq!(start(), id);

    fake.set_reply(Reply {
        text: "Done: the note is final.".into(),
        tool_trigger: Some("finalise the note".into()),
        tool_steps: vec![
            ToolStep {
                name: "Read".into(),
                input: serde_json::json!({"file_path": file}),
            },
            ToolStep {
                name: "Edit".into(),
                input: serde_json::json!({
                    "file_path": file,
                    "old_string": "draft\n",
                    "new_string": "final\n",
                }),
            },
        ],
        ..Reply::default()
    });
    let screen = || stdout(&env.run(&["logs", &id, "--tail", "200"]));
    let activity = || {
        env.run(&["list"]);
        env.instance(&id)["activity"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // Its prompt is up: its SessionStart hook says idle.
    assert!(
        wait_until(Duration::from_secs(120), || activity() == "idle"),
        "{}\nscreen:\n{}",
        env.instance(&id),
        screen()
    );
    let sent = std::time::Instant::now();
    let out = env.run(&["send", &id, "finalise the note"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The permission dialog is up and the instance waits, while the file
    // is as it was (nothing answered yet).
    assert!(
        wait_until(Duration::from_secs(30), || activity() == "waiting"),
        "not waiting: {}\nscreen:\n{}\nthe API saw: {:?}",
        env.instance(&id),
        screen(),
        fake.seen()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>()
    );
    eprintln!("waiting {:?} after the message", sent.elapsed());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "draft\n");
    let s = screen();
    assert!(s.contains("notes.txt"), "the dialog names the file:\n{s}");
    let listed: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["needs_you"], true, "{listed:#}");
    let prompt = env.ok(&["prompt"]);
    assert!(prompt.contains("?1"), "{prompt:?}");

    // "1" picks "Yes" in the dialog: the edit runs, the turn ends idle.
    let out = env.run(&["send", &id, "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(&file)
            .is_ok_and(|t| t == "final\n")),
        "the edit did not run: screen:\n{}",
        screen()
    );
    assert!(
        wait_until(Duration::from_secs(60), || activity() == "idle"),
        "{}\nscreen:\n{}",
        env.instance(&id),
        screen()
    );
    // Its question tool: waiting while the question is on screen.
    fake.set_reply(Reply {
        text: "Kept as final.".into(),
        tool_trigger: Some("ask me which word".into()),
        // The fake picks the step by the tool results in the whole
        // conversation: the first turn's two come first.
        tool_steps: vec![
            ToolStep {
                name: "Read".into(),
                input: serde_json::json!({"file_path": file}),
            },
            ToolStep {
                name: "Read".into(),
                input: serde_json::json!({"file_path": file}),
            },
            ToolStep {
                name: "AskUserQuestion".into(),
                input: serde_json::json!({"questions": [{
                    "question": "Which word should the note hold?",
                    "header": "Word",
                    "multiSelect": false,
                    "options": [
                        {"label": "final", "description": "keep it"},
                        {"label": "done", "description": "change it"},
                    ],
                }]}),
            },
        ],
        ..Reply::default()
    });
    let out = env.run(&["send", &id, "ask me which word"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(30), || activity() == "waiting"
            && screen().contains("Which word should the note hold?")),
        "not waiting on its question: {}\nscreen:\n{}",
        env.instance(&id),
        screen()
    );
    let out = env.run(&["send", &id, "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(60), || activity() == "idle"
            && screen().contains("Kept as final.")),
        "{}\nscreen:\n{}",
        env.instance(&id),
        screen()
    );
    env.ok(&["stop", &id]);
}
