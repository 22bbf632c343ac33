//! The first hour of a new user, one rough edge per test (the shell and
//! installer parts are in `first_hour_shell.rs`): messages that name the
//! way forward, ids that stay one per project, typos answered with the
//! closest name, config edits that land where they belong, listings that
//! say what they mean.

use crate::tmux_support;

use crate::common::*;
use std::path::Path;

/// Registry entries for `(id, project_path, status)`, runtime host, no pid.
fn plant(env: &Env, rows: &[(&str, &str, &str)]) {
    let mut map = serde_json::Map::new();
    for (n, (id, path, status)) in rows.iter().enumerate() {
        let (project, mode) = id.rsplit_once('-').unwrap();
        map.insert(
            (*id).to_owned(),
            serde_json::json!({
                "id": id, "project_path": path, "project_name": project,
                "mode": mode, "status": status, "port": 9100 + n, "runtime": "host",
            }),
        );
    }
    let reg = serde_json::json!({ "instances": map });
    std::fs::write(env.state().join("registry.json"), reg.to_string()).unwrap();
}

/// A host agent that just sleeps: a live instance without an engine.
fn sleeper_config(env: &Env) {
    env.write_config(
        "[global]\nruntime = \"host\"\n\n[agents.claude]\ncommand = [\"sleep\", \"300\"]\n",
    );
}

// ------------------------------------------------------- item 7 and 8

/// Item 7: image not built, `auto`, agent not on the host: both ways
/// forward, the image first.
#[test]
fn auto_without_image_or_host_agent_names_image_build_first() {
    if !docker_or_skip("auto_without_image_or_host_agent_names_image_build_first") {
        return;
    }
    let env = Env::new();
    env.write_config(
        "[agents.claude]\ncommand = [\"ais-no-such-agent\"]\nimage = \"ais-never-built-image:latest\"\n",
    );
    let proj = env.project(&env.unique("noimg"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let build = err
        .find("ai-sessctl image build claude")
        .unwrap_or_else(|| panic!("no image build hint:\n{err}"));
    let host = err
        .find("install")
        .unwrap_or_else(|| panic!("no host install hint:\n{err}"));
    assert!(build < host, "image first, then the host:\n{err}");
    assert!(
        !err.contains("use the docker runtime"),
        "no advice to use what failed:\n{err}"
    );
}

/// Item 8: engine unreachable in `auto`, agent not on the host: the
/// engine's endpoint and OS error, how to start it, exit 4.
#[test]
fn auto_with_engine_down_and_no_host_agent_explains_the_engine() {
    let env = Env::new();
    env.write_config("[agents.claude]\ncommand = [\"ais-no-such-agent\"]\n");
    let proj = env.project(&env.unique("down"));
    let sock = env.state().join("no-engine.sock");
    let host = format!("unix://{}", sock.display());
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", &host)
        .args(["start", "--detach", "--mode", "claude"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(&host), "names the endpoint:\n{err}");
    assert!(
        err.contains("No such file or directory"),
        "the OS error:\n{err}"
    );
    assert!(err.contains("start the engine"), "how to start it:\n{err}");
    assert!(!err.contains("use the docker runtime"), "{err}");
}

// --------------------------------------------------------------- item 9

/// Item 9: two projects named `api`: the list shows enough of each path
/// to tell them apart.
#[test]
fn list_tells_two_projects_of_the_same_name_apart() {
    let env = Env::new();
    plant(
        &env,
        &[
            ("api-claude", "/home/u/src/api", "stopped"),
            ("api-2-claude", "/home/u/work/api", "stopped"),
        ],
    );
    let out = env.ok(&["list"]);
    assert!(out.contains("src/api"), "{out}");
    assert!(out.contains("work/api"), "{out}");
}

// -------------------------------------------------------------- item 10

/// Item 10: `find .` in a subdirectory of a git project finds the
/// instance `claude` there would attach to.
#[test]
fn find_dot_from_a_subdirectory_resolves_the_project() {
    let env = Env::new();
    let proj = env.project(&env.unique("findme"));
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    std::fs::create_dir_all(proj.join("src/deep")).unwrap();
    let id = format!("{}-claude", env.unique("findme"));
    plant(&env, &[(&id, proj.to_str().unwrap(), "stopped")]);
    let out = env.run_in(&proj.join("src/deep"), &["find", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
}

// -------------------------------------------------------------- item 11

/// Item 11: a mistyped id or agent gets the closest name.
#[test]
fn typos_get_did_you_mean() {
    let env = Env::new();
    plant(&env, &[("api-claude", "/nonexistent/api", "stopped")]);
    let out = env.run(&["stop", "api-cluade"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("did you mean api-claude"), "{err}");

    let out = env.run(&["show", "api-claude-x"]);
    assert!(
        stderr(&out).contains("did you mean api-claude"),
        "{}",
        stderr(&out)
    );

    let proj = env.project("typo");
    let out = env.run_in(&proj, &["run", "cladue"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("did you mean claude"), "{err}");
    assert!(
        !err.contains("[agents.cladue]"),
        "no advice to define it:\n{err}"
    );
    // Far from every agent: the advice to define it stays.
    let out = env.run_in(&proj, &["run", "aider"]);
    assert!(stderr(&out).contains("[agents.aider]"), "{}", stderr(&out));
}

// -------------------------------------------------------------- item 12

/// Item 12: a new table set into the shipped template goes after the
/// commented examples of the table above it.
#[test]
fn config_set_into_the_template_keeps_examples_in_their_tables() {
    let env = Env::new();
    std::fs::remove_file(env.state().join("config.toml")).unwrap();
    env.ok(&[
        "config",
        "set",
        "--global",
        "agents.claude.command",
        "[\"my-claude\"]",
    ]);
    let path = env.state().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The user uncomments the alerts example.
    let edited = text.replace(
        "# command = [\"notify-send\", \"ai-sessions\"]",
        "command = [\"notify-send\", \"ai-sessions\"]",
    );
    assert_ne!(edited, text, "the alerts example is in the template");
    std::fs::write(&path, edited).unwrap();
    let got = env.ok(&["config", "get", "--global", "agents.claude.command"]);
    assert_eq!(got.trim(), "[\"my-claude\"]", "file:\n{text}");
    let got = env.ok(&["config", "get", "--global", "alerts.command"]);
    assert!(got.contains("notify-send"), "{got}");
}

// -------------------------------------------------------------- item 13

/// Item 13: a change to a running instance's config says when it applies.
#[test]
fn config_set_on_a_running_instance_says_restart() {
    let env = Env::new();
    sleeper_config(&env);
    let proj = env.project(&env.unique("cfg"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let out = env.run(&["config", "set", &id, "resources.memory.limit", "2Gi"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("next start") && err.contains(&format!("ai-sessctl restart {id}")),
        "{err}"
    );
    // The same after an edit in the editor.
    let editor = env.state().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '\\n[health]\\ntimeout = \"7s\"\\n' >>\"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env
        .cmd()
        .env_remove("VISUAL")
        .env("EDITOR", &editor)
        .args(["config", &id, "--edit"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("ai-sessctl restart {id}")), "{err}");
    env.ok(&["stop", "--force", &id]);
    // Stopped: nothing to say.
    let out = env.run(&["config", "set", &id, "resources.memory.limit", "1Gi"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

// -------------------------------------------------------------- item 14

/// Item 14: an engine outage is reported, not stored as the instance's
/// health.
#[test]
fn health_check_with_engine_down_stores_nothing() {
    let env = Env::new();
    let reg = serde_json::json!({"instances": {"hc-claude": {
        "id": "hc-claude", "project_path": "/nonexistent/hc", "project_name": "hc",
        "mode": "claude", "status": "running", "port": 9100, "runtime": "docker",
        "container_id": "0123456789abcdef",
    }}});
    std::fs::write(env.state().join("registry.json"), reg.to_string()).unwrap();
    let host = format!("unix://{}", env.state().join("none.sock").display());
    let out = env
        .cmd()
        .env("DOCKER_HOST", &host)
        .args(["health", "check"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}\n{}", stdout(&out));
    assert!(err.contains(&host), "{err}");
    let inst = env.instance("hc-claude");
    assert!(inst["health"].is_null(), "nothing stored: {inst:#}");
    assert_eq!(inst["status"], "running", "{inst:#}");
}

// -------------------------------------------------------------- item 15

/// Item 15: limits in the user's units; usage only with its age.
#[test]
fn list_shows_limits_in_user_units_and_usage_with_age() {
    let env = Env::new();
    sleeper_config(&env);
    env.ok(&["config", "set", "--global", "resources.memory.limit", "2GB"]);
    let proj = env.project(&env.unique("res"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let list = env.ok(&["list"]);
    assert!(list.contains("2G"), "{list}");
    assert!(!list.contains("1953125Ki"), "{list}");
    let header = list.lines().next().unwrap();
    assert!(header.contains("CPU") && header.contains("MEM"), "{list}");
    // A sample from ten minutes ago shows as old.
    let path = env.state().join("registry.json");
    let mut reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let when = (chrono_now_minus(600)).to_string();
    reg["instances"][&id]["resources"]["cpu_usage"] = "12.5%".into();
    reg["instances"][&id]["resources"]["memory_usage"] = "40.0MiB".into();
    reg["instances"][&id]["resources"]["usage_at"] = when.into();
    std::fs::write(&path, reg.to_string()).unwrap();
    let list = env.ok(&["list"]);
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("12.5%") && row.contains("10m ago"), "{list}");
    env.ok(&["stop", "--force", &id]);
}

fn chrono_now_minus(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", now_secs() - secs)])
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .unwrap();
    stdout(&out).trim().to_owned()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// -------------------------------------------------------------- item 16

/// Item 16: a paused instance counts the same in the list filter and the
/// prompt.
#[test]
fn paused_counts_the_same_in_list_and_prompt() {
    let env = Env::new();
    sleeper_config(&env);
    let proj = env.project(&env.unique("pause"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    env.ok(&["pause", &id]);
    let running = env.ok(&["list", "--status", "running", "--quiet"]);
    let in_list = running.lines().any(|l| l == id);
    let other = env.project("elsewhere");
    let prompt = env
        .cmd()
        .current_dir(&other)
        .env("PWD", &other)
        .arg("prompt")
        .output()
        .unwrap();
    let prompt = stdout(&prompt);
    let in_prompt = prompt.starts_with("ai:1");
    assert_eq!(in_list, in_prompt, "list: {running:?}, prompt: {prompt:?}");
    let tsv = std::fs::read_to_string(env.state().join("prompt.tsv")).unwrap();
    assert!(tsv.contains("\tpaused\t"), "{tsv}");
    env.ok(&["stop", "--force", &id]);
}

// -------------------------------------------------------------- item 19

#[test]
fn small_ones() {
    let env = Env::new();
    // dashboard --help: a summary for people, JSON on request.
    let help = env.ok(&["dashboard", "--help"]);
    let first = help.lines().next().unwrap();
    assert!(!first.contains("as JSON"), "{help}");

    // gc --dry-run with nothing to do says so.
    let out = env
        .cmd()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(["gc", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to remove"),
        "{}",
        stdout(&out)
    );

    // serve on a taken port suggests --addr.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = env.run(&["serve", "--addr", &addr]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("--addr"), "{err}");

    // README: bash's segment is prepended to PS1.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(!readme.contains("appended to `PS1`") && !readme.contains("appends it to PS1"));
}

// -------------------------------------------------------------- item 18

/// What bash gets for `ai-sessctl <words…>` (clap_complete's protocol).
fn complete(env: &Env, words: &[&str]) -> Vec<String> {
    let out = env
        .cmd()
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", words.len().to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .env("_CLAP_IFS", "\n")
        .arg("--")
        .arg("ai-sessctl")
        .args(words)
        .output()
        .unwrap();
    assert!(out.status.success(), "{words:?}: {}", stderr(&out));
    stdout(&out).lines().map(str::to_owned).collect()
}

/// Item 18: after the scope, config get/set complete config keys.
#[test]
fn config_get_set_complete_keys_after_the_scope() {
    let env = Env::new();
    plant(&env, &[("api-claude", "/nonexistent/api", "stopped")]);
    let has = |got: &[String], want: &str| got.iter().any(|c| c == want);
    let got = complete(&env, &["config", "get", ""]);
    assert!(has(&got, "api-claude"), "the scope first: {got:?}");
    for words in [
        &["config", "get", "--global", ""][..],
        &["config", "set", "--global", ""],
        &["config", "get", "api-claude", ""],
        &["config", "set", "api-claude", ""],
    ] {
        let got = complete(&env, words);
        assert!(has(&got, "resources.memory.limit"), "{words:?}: {got:?}");
        assert!(has(&got, "networking.port_range"), "{words:?}: {got:?}");
        assert!(!has(&got, "api-claude"), "{words:?}: {got:?}");
    }
    let got = complete(&env, &["config", "get", "--global", "resources.m"]);
    assert!(
        got.iter().all(|c| c.starts_with("resources.m")) && has(&got, "resources.memory.limit"),
        "{got:?}"
    );
    let got = complete(&env, &["config", "set", "--global", "health.timeout", ""]);
    assert!(
        !has(&got, "resources.memory.limit"),
        "a value, not a key: {got:?}"
    );
}

// -------------------------------------------------------------- item 17

/// Item 17: `top` sizes the ID column to the ids (not most of the width)
/// and shows which key it sorts by.
#[test]
fn top_gives_columns_sane_widths_and_shows_the_sort_key() {
    if !tmux_support::tools_or_skip(
        "top_gives_columns_sane_widths_and_shows_the_sort_key",
        &["tmux"],
    ) {
        return;
    }
    let env = Env::new();
    sleeper_config(&env);
    let proj = env.project(&env.unique("topw"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let envs = vec![
        (
            "AI_SESSIONS_HOME".to_owned(),
            env.state().to_str().unwrap().to_owned(),
        ),
        ("TERM".to_owned(), "xterm-256color".to_owned()),
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
    ];
    let t = tmux_support::Tmux::start(env.state(), &envs, &[BIN, "top"]);
    let screen = t.wait("the top table", |p| p.contains(&id) && p.contains("STATUS"));
    let header = screen
        .lines()
        .find(|l| l.contains("STATUS") && l.contains("ID"))
        .unwrap();
    let col = |name: &str| header.find(name).unwrap();
    assert!(
        col("STATUS") - col("ID") <= id.len() + 4,
        "the ID column is as wide as the ids:\n{screen}"
    );
    assert!(screen.contains("sorted by name"), "{screen}");
    t.keys(&["m"]);
    let screen = t.wait("sort by memory", |p| p.contains("sorted by memory"));
    let header = screen.lines().find(|l| l.contains("STATUS")).unwrap();
    assert!(
        header.contains("MEM ▼") || header.contains("MEMORY ▼"),
        "{screen}"
    );
    t.keys(&["q"]);
    env.ok(&["stop", "--force", &id]);
}
