//! `list`, `show`, `find`, `dashboard` and `prompt.tsv` over a planted
//! registry: what a user sees, with reconcile running for real (host
//! instances are checked against the process table, no engine is needed).

use crate::common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command};

/// A live process the planted host instances point at.
struct Sleeper(Child);
impl Sleeper {
    fn new() -> Self {
        Sleeper(Command::new("sleep").arg("300").spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// What the registry records for it.
    fn start_time(&self) -> u64 {
        ai_sessions::core::procinfo::start_time(self.pid()).unwrap()
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    env: Env,
    sleeper: Sleeper,
    api: PathBuf,
    port: u16,
}

fn ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339()
}

/// Six instances in every status. `ghost-claude` claims to run but its pid
/// belongs to another process (start time differs): reconcile must notice.
fn world() -> World {
    let env = Env::new();
    let sleeper = Sleeper::new();
    let (pid, start) = (sleeper.pid(), sleeper.start_time());
    let p = env.port_base;
    let path = |name: &str| env.project(name).to_string_lossy().into_owned();
    let api = env.project("api");
    let inst = |id: &str, project: &str, mode: &str, status: &str, port: u16, extra: Value| {
        let mut v = json!({
            "id": id, "project_path": path(project), "project_name": project,
            "mode": mode, "status": status, "port": port,
            "resources": {"memory_limit": "1Gi", "cpu_limit": "500m"},
            "timestamps": {"created": ago(125), "started": ago(121)},
            "config": {"model": "m"},
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        (id.to_owned(), v)
    };
    let instances: serde_json::Map<String, Value> = [
        inst(
            "api-claude",
            "api",
            "claude",
            "running",
            p + 1,
            json!({"runtime": "host", "pid": pid, "pid_start_time": start}),
        ),
        inst(
            "tools-claude",
            "tools",
            "claude",
            "paused",
            p + 2,
            json!({"runtime": "host", "pid": pid, "pid_start_time": start}),
        ),
        inst(
            "docs-gemini",
            "docs",
            "gemini",
            "initializing",
            p + 3,
            json!({"timestamps": {"created": ago(0)}, "resources": {}}),
        ),
        inst(
            "api-gemini",
            "api",
            "gemini",
            "stopped",
            p + 4,
            json!({"timestamps": {"created": ago(600), "stopped": ago(60)}}),
        ),
        inst(
            "web-claude",
            "web",
            "claude",
            "error",
            p + 5,
            json!({"status_reason": "agent exited with code 3", "exit_code": 3}),
        ),
        inst(
            "ghost-claude",
            "ghost",
            "claude",
            "running",
            p + 6,
            json!({"runtime": "host", "pid": pid, "pid_start_time": start + 1}),
        ),
    ]
    .into_iter()
    .collect();
    let reg = json!({"instances": instances});
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_string_pretty(&reg).unwrap(),
    )
    .unwrap();
    World {
        env,
        sleeper,
        api,
        port: p + 1,
    }
}

/// Rows of the table: header first, cells split on runs of 2+ spaces.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn ids(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[test]
fn list_shows_the_seed_columns_and_reconciles() {
    let w = world();
    let env = &w.env;
    let out = env.ok(&["list"]);
    assert!(!out.contains('\x1b'), "escape codes with NO_COLOR: {out:?}");
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "ID", "PROJECT", "MODE", "PORT", "STATUS", "ACTIVITY", "LIMITS", "CPU", "MEM",
            "UPTIME", "SPEND"
        ],
        "{out}"
    );
    assert_eq!(rows.len(), 7, "{out}");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("{id} missing:\n{out}"))
    };
    let api = row("api-claude");
    assert_eq!(
        api[1..9],
        [
            w.api.to_str().unwrap(),
            "claude",
            &w.port.to_string(),
            "running",
            "unknown",
            "500m / 1Gi",
            "-",
            "-"
        ],
        "{out}"
    );
    assert!(
        api[9].starts_with("2h"),
        "uptime of a 2 h old instance: {:?}",
        api[9]
    );
    assert_eq!(row("tools-claude")[4], "paused");
    assert_eq!(
        row("docs-gemini")[4],
        "initializing",
        "a young start is left alone"
    );
    assert_eq!(row("docs-gemini")[6], "-");
    assert_eq!(row("api-gemini")[4], "stopped");
    assert_eq!(row("api-gemini")[5], "-", "no activity when stopped");
    assert_eq!(row("api-gemini")[9], "-", "no uptime when stopped");
    assert_eq!(row("web-claude")[4], "error");
    assert_eq!(
        row("ghost-claude")[4],
        "stopped",
        "a dead host agent is shown stopped"
    );

    // The correction was recorded, with a reason and an event.
    let ghost = env.instance("ghost-claude");
    assert_eq!(ghost["status"], "stopped");
    assert_eq!(ghost["status_reason"], "agent process ended");
    assert_eq!(env.instance("api-claude")["status"], "running");
    let log = std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap();
    assert!(log.contains("ghost-claude"), "{log}");

    // Piped without NO_COLOR: still no colour (not a terminal).
    let out = env
        .cmd()
        .env_remove("NO_COLOR")
        .arg("list")
        .output()
        .unwrap();
    assert!(!stdout(&out).contains('\x1b'));
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let w = world();
    let run_on_pty = |no_color: bool| {
        let mut c = w.env.cmd();
        c.arg("list");
        if !no_color {
            c.env_remove("NO_COLOR");
        }
        let mut p = rexpect::session::spawn_command(c, Some(10_000)).unwrap();
        p.exp_eof().unwrap()
    };
    let coloured = run_on_pty(false);
    assert!(
        coloured.contains("\x1b[32mrunning\x1b[0m"),
        "running in green on a TTY: {coloured:?}"
    );
    let plain = run_on_pty(true);
    assert!(plain.contains("running"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR on a TTY: {plain:?}");
}

#[test]
fn status_filters_json_and_quiet() {
    let w = world();
    let env = &w.env;
    assert_eq!(
        ids(&env.ok(&["list", "--quiet"])),
        [
            "api-claude",
            "api-gemini",
            "docs-gemini",
            "ghost-claude",
            "tools-claude",
            "web-claude"
        ]
    );
    assert_eq!(
        ids(&env.ok(&["list", "--status", "running", "-q"])),
        ["api-claude", "docs-gemini", "tools-claude"],
        "running = live (running, paused, starting)"
    );
    assert_eq!(
        ids(&env.ok(&["list", "--status", "stopped", "--quiet"])),
        ["api-gemini", "ghost-claude", "web-claude"]
    );
    let running_table = env.ok(&["list", "--status", "running"]);
    assert!(!running_table.contains("web-claude"), "{running_table}");

    let v: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 6);
    let api = arr.iter().find(|i| i["id"] == "api-claude").unwrap();
    assert_eq!(api["port"], w.port);
    assert_eq!(api["project_path"], w.api.to_str().unwrap());
    assert_eq!(api["mode"], "claude");
    assert_eq!(api["resources"]["memory_limit"], "1Gi");
    let v: Value =
        serde_json::from_str(&env.ok(&["list", "--json", "--status", "stopped"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // --json and --quiet exclude each other.
    assert_eq!(
        env.run(&["list", "--json", "--quiet"]).status.code(),
        Some(2)
    );

    // An empty registry says so.
    let empty = Env::new();
    assert_eq!(empty.ok(&["list"]).trim(), "No instances.");
    assert_eq!(empty.ok(&["list", "--json"]).trim(), "[]");
    assert_eq!(empty.ok(&["list", "-q"]), "");
}

#[test]
fn show_find_and_unknown_ids() {
    let w = world();
    let env = &w.env;
    let show = env.ok(&["show", "api-claude"]);
    for want in [
        "id:".to_owned(),
        "api-claude".to_owned(),
        "running".to_owned(),
        w.api.to_string_lossy().into_owned(),
        format!("127.0.0.1:{}", w.port),
        "host".to_owned(),
        "500m / 1Gi".to_owned(),
    ] {
        assert!(show.contains(&want), "show lacks {want:?}:\n{show}");
    }
    let web = env.ok(&["show", "web-claude"]);
    assert!(web.contains("agent exited with code 3"), "{web}");
    assert!(web.contains("exit code:") && web.contains('3'), "{web}");
    let v: Value = serde_json::from_str(&env.ok(&["show", "api-claude", "--json"])).unwrap();
    assert_eq!(v["id"], "api-claude");
    assert_eq!(v["pid"], w.sleeper.pid());

    let find = env.ok(&["find", "api"]);
    let found: Vec<&str> = find
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(found, ["api-claude", "api-gemini"], "{find}");
    let find = env.ok(&["find", "api", "claude"]);
    assert_eq!(find.lines().count(), 1, "{find}");
    let cols: Vec<&str> = find.trim_end().split('\t').collect();
    assert_eq!(
        cols,
        [
            "api-claude",
            "running",
            &w.port.to_string(),
            w.api.to_str().unwrap()
        ]
    );
    let by_path = env.ok(&["find", w.api.to_str().unwrap(), "gemini"]);
    assert!(by_path.starts_with("api-gemini\t"), "{by_path}");
    let v: Value = serde_json::from_str(&env.ok(&["find", "api", "--json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    // A path to another directory named api is another project.
    let other = env.project("elsewhere/api");
    let out = env.run(&["find", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));

    for args in [
        &["show", "nope-claude"][..],
        &["show", "nope-claude", "--json"],
        &["find", "nope"],
        &["find", "api", "codex"],
        &["stop", "nope-claude"],
        &["rm", "nope-claude"],
        &["logs", "nope-claude"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("ai-sessctl: error: no instance"),
            "{args:?}: {err}"
        );
        assert!(
            stdout(&out).trim().is_empty() || stdout(&out).trim() == "[]",
            "{args:?}"
        );
    }
}

#[test]
fn dashboard_json_summarises_instances_and_host() {
    let w = world();
    let v: Value = serde_json::from_str(&w.env.ok(&["dashboard", "--json"])).unwrap();
    chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
    let load = v["system"]["load"].as_array().unwrap();
    assert_eq!(load.len(), 3, "{v}");
    assert!(load.iter().all(|l| l.as_f64().is_some_and(|x| x >= 0.0)));
    assert!(
        v["system"]["memory_total_bytes"].as_u64().unwrap() > 1 << 20,
        "{v}"
    );
    let instances = v["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 6);
    let api = instances
        .iter()
        .find(|i| i["instance"] == "api-claude")
        .unwrap();
    assert_eq!(api["status"], "running");
    assert_eq!(api["port"], w.port);
    assert_eq!(
        v["summary"],
        json!({"total": 6, "running": 1, "paused": 1, "stopped": 2, "error": 1, "needs_you": 0}),
        "ghost-claude is counted as stopped after reconcile"
    );
    // Without --json: the same summary for people.
    let text = w.env.ok(&["dashboard"]);
    assert!(
        text.contains("instances: 1 running, 1 paused, 2 stopped, 1 error"),
        "{text}"
    );
    assert!(
        text.contains("api-claude") && text.contains("host: load"),
        "{text}"
    );
}

#[test]
fn prompt_file_follows_the_registry() {
    let w = world();
    let env = &w.env;
    let prompt = env.state().join("prompt.tsv");
    assert!(!prompt.exists());
    // Any registry write renders it: here a port allocation.
    env.ok(&["port", "alloc"]);
    let text = std::fs::read_to_string(&prompt).unwrap();
    let mut lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    lines.sort();
    let path = |n: &str| {
        env.projects
            .path()
            .canonicalize()
            .unwrap()
            .join(n)
            .to_string_lossy()
            .into_owned()
    };
    let p = env.port_base;
    let want: Vec<Vec<String>> = vec![
        vec![
            path("api"),
            "api-claude".into(),
            "claude".into(),
            "running".into(),
            (p + 1).to_string(),
            "unknown".into(),
        ],
        vec![
            path("docs"),
            "docs-gemini".into(),
            "gemini".into(),
            "initializing".into(),
            (p + 3).to_string(),
            "unknown".into(),
        ],
        // Not reconciled yet: port alloc does not look at processes.
        vec![
            path("ghost"),
            "ghost-claude".into(),
            "claude".into(),
            "running".into(),
            (p + 6).to_string(),
            "unknown".into(),
        ],
        vec![
            path("tools"),
            "tools-claude".into(),
            "claude".into(),
            "paused".into(),
            (p + 2).to_string(),
            "unknown".into(),
        ],
    ];
    assert_eq!(lines, want, "{text}");

    // A reconcile that changes the registry rewrites it: the ghost goes.
    env.ok(&["list", "-q"]);
    let text = std::fs::read_to_string(&prompt).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains("ghost-claude"), "{text}");
    assert!(text.ends_with('\n'));

    // `prompt` in the api project shows the agents there.
    let out = env
        .cmd()
        .current_dir(&w.api)
        .env("PWD", &w.api)
        .arg("prompt")
        .output()
        .unwrap();
    // Live instances: api-claude running, tools-claude paused, docs-gemini
    // starting (the same count as `list --status running`).
    let seg = stdout(&out);
    assert!(seg.starts_with("ai:3"), "{seg:?}");
    assert!(seg.contains("claude●"), "{seg:?}");
    let sub = w.api.join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let out = env
        .cmd()
        .current_dir(&sub)
        .env("PWD", &sub)
        .arg("prompt")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("claude●"),
        "a subdirectory belongs to the project"
    );
    // A sibling whose name starts the same does not.
    let sibling = env.project("api2");
    let out = env
        .cmd()
        .current_dir(&sibling)
        .env("PWD", &sibling)
        .arg("prompt")
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "ai:3", "{}", stdout(&out));
}

#[test]
fn list_shows_a_branch_column_once_a_worktree_instance_is_listed() {
    let w = world();
    let env = &w.env;
    let path = env.state().join("registry.json");
    let mut reg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    reg["instances"]["api-gemini"]["worktree"] = json!({
        "name": "feat", "branch": "ai/feat",
        "path": w.api.to_str().unwrap(), "repo": w.api.to_str().unwrap(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&reg).unwrap()).unwrap();
    let out = env.ok(&["list"]);
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "ID", "PROJECT", "BRANCH", "MODE", "PORT", "STATUS", "ACTIVITY", "LIMITS", "CPU",
            "MEM", "UPTIME", "SPEND"
        ],
        "{out}"
    );
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!(row("api-gemini")[2], "ai/feat", "{out}");
    assert_eq!(row("api-claude")[2], "-", "{out}");
    // --json carries it too, under `worktree`.
    let json: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    let wt = json
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "api-gemini")
        .unwrap()["worktree"]
        .clone();
    assert_eq!(wt["branch"], "ai/feat", "{json:#}");
    // A stopped-only filter without worktree rows: no column.
    let out = env.ok(&["list", "--status", "running"]);
    assert!(!table(&out)[0].contains(&"BRANCH".to_owned()), "{out}");
}
