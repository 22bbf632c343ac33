//! Hostile instance ids and project paths: rejected cleanly, never
//! interpreted by a shell, never used to build paths outside the state dir.

use crate::common::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Every file and directory below `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn run_os(env: &Env, args: &[&OsStr]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn hostile_ids(token: &str) -> Vec<OsString> {
    let mut ids: Vec<OsString> = [
        "../x-claude".to_owned(),
        "../../etc/passwd-claude".to_owned(),
        "a/b-claude".to_owned(),
        "a;b-claude".to_owned(),
        "\"q\"-claude".to_owned(),
        format!("$(touch /tmp/pwned-{token})-claude"),
        "$(touch /tmp/pwned)-claude".to_owned(),
        "`touch /tmp/pwned`-claude".to_owned(),
        "a\nb-claude".to_owned(),
        "a b-claude".to_owned(),
        "-claude".to_owned(),
        "x-claude2".to_owned(),
        "x-".to_owned(),
        "claude".to_owned(),
        "é-claude".to_owned(),
        format!("{}-claude", "a".repeat(10_000)),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    ids.push(OsStr::from_bytes(b"a\xff\xfeb-claude").to_owned());
    ids
}

#[test]
fn hostile_ids_are_rejected_with_usage_errors_and_create_nothing() {
    let env = Env::new();
    let before = tree(env.state());
    let pwned_before = Path::new("/tmp/pwned").exists();
    let parent = env.state().parent().unwrap().to_path_buf();
    let parent_before = tree_shallow(&parent);
    for id in hostile_ids(&env.token) {
        let id = id.as_os_str();
        let commands: Vec<Vec<&OsStr>> = vec![
            vec![OsStr::new("show"), id],
            vec![OsStr::new("show"), id, OsStr::new("--json")],
            vec![
                OsStr::new("port"),
                OsStr::new("alloc"),
                OsStr::new("--for"),
                id,
            ],
            vec![
                OsStr::new("config"),
                OsStr::new("set"),
                id,
                OsStr::new("resources.cpu.limit"),
                OsStr::new("1"),
            ],
            vec![
                OsStr::new("config"),
                OsStr::new("get"),
                id,
                OsStr::new("resources.cpu.limit"),
            ],
            vec![OsStr::new("config"), id],
            vec![OsStr::new("stop"), id],
            vec![OsStr::new("rm"), id],
            vec![
                OsStr::new("rm"),
                OsStr::new("--force"),
                OsStr::new("--state"),
                id,
            ],
            vec![OsStr::new("logs"), id],
            vec![OsStr::new("pause"), id],
            vec![OsStr::new("restart"), id],
        ];
        for args in commands {
            let out = run_os(&env, &args);
            let shown: Vec<String> = args
                .iter()
                .map(|a| {
                    let s = a.to_string_lossy();
                    s.chars().take(40).collect()
                })
                .collect();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{shown:?} should be a usage error:\n{}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains("invalid instance id")
                    || err.contains("invalid UTF-8")
                    || err.contains("unexpected argument"), // `-claude` reads as flags
                "{shown:?}: the error does not say what is wrong: {err}"
            );
            assert!(!err.contains("panicked"), "{shown:?}: {err}");
            // clap echoes the raw value once (a 10k-character id comes back
            // once); our own message truncates it.
            assert!(
                err.len() < 12_000,
                "{shown:?}: {} bytes of error",
                err.len()
            );
            assert!(stdout(&out).is_empty(), "{shown:?}: {}", stdout(&out));
        }
    }
    assert_eq!(tree(env.state()), before, "the state dir changed");
    assert_eq!(
        tree_shallow(&parent),
        parent_before,
        "something appeared next to the state dir"
    );
    assert!(
        !Path::new(&format!("/tmp/pwned-{}", env.token)).exists(),
        "a shell ran the id"
    );
    if !pwned_before {
        assert!(!Path::new("/tmp/pwned").exists(), "a shell ran the id");
    }
}

fn tree_shallow(dir: &Path) -> Vec<String> {
    // Only names that could come from an id: the temp dir holds other
    // tests' files too, which may come and go.
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("claude") || n.starts_with("pwned"))
        .collect();
    v.sort();
    v
}

/// Directory names a user might really have, and some nobody should.
fn hostile_dirs() -> Vec<(&'static str, String, &'static str)> {
    // (label, directory name, expected project part of the id)
    vec![
        ("space", "my project".into(), "my_project"),
        ("quotes", "it's \"quoted\"".into(), "it_s_quoted"),
        ("subst", "$(touch pwned)".into(), "touch_pwned"),
        ("semicolon", "a;b".into(), "a_b"),
        ("backtick", "`id`x".into(), "id_x"),
        ("unicode", "ünïcødé".into(), "n_c_d"),
        ("long", "x".repeat(200), ""),
    ]
}

#[test]
fn hostile_project_paths_are_handled_without_breaking_anything() {
    let env = Env::new();
    for (label, name, _) in hostile_dirs() {
        let dir = env.project(&name);
        let out = env.run(&["find", dir.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{label}: find: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{label}: {err}");
        assert!(
            err.starts_with("ai-sessctl: error: no instance"),
            "{label}: {err}"
        );
        // Prompt and allocation run fine from inside such a directory.
        let out = env
            .cmd()
            .current_dir(&dir)
            .env("PWD", &dir)
            .arg("prompt")
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: prompt: {}", stderr(&out));
        assert!(
            stdout(&out).is_empty(),
            "{label}: nothing runs: {}",
            stdout(&out)
        );
        let out = env.run_in(&dir, &["port", "alloc"]);
        assert!(
            out.status.success(),
            "{label}: port alloc: {}",
            stderr(&out)
        );
    }
    // The name of a project (not a path) is matched literally.
    let out = env.run(&["find", "$(touch pwned)"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!env.projects.path().join("pwned").exists());
    assert!(!Path::new("pwned").exists());
}

/// A temp bin dir whose `claude` and `gemini` are the fake agent.
fn fake_agent_bin() -> tempfile::TempDir {
    let bin = tempfile::Builder::new()
        .prefix("ais-bin")
        .tempdir()
        .unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent/fake-agent");
    for name in ["claude", "gemini"] {
        std::fs::copy(&src, bin.path().join(name)).unwrap();
    }
    bin
}

/// Stops every instance of the env when dropped, even after a failure.
struct StopAll<'a>(&'a Env);
impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["stop", "--all", "--force"]);
    }
}

#[test]
fn ids_derived_from_hostile_paths_are_sanitised_and_state_stays_home() {
    let env = Env::new();
    env.write_config("[global]\nstop_timeout = \"3s\"\nmax_instances = 20\n");
    let bin = fake_agent_bin();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _stop = StopAll(&env);
    let start = |dir: &Path| {
        env.cmd()
            .env("PATH", &path)
            .env("FAKE_AGENT_STAY", "1")
            .args([
                "start",
                dir.to_str().unwrap(),
                "--mode",
                "claude",
                "--runtime",
                "host",
                "--detach",
            ])
            .output()
            .unwrap()
    };
    let mut started: Vec<(String, PathBuf)> = Vec::new();
    for (label, name, want) in hostile_dirs() {
        let dir = env.project(&name);
        let out = start(&dir);
        assert!(
            out.status.success(),
            "{label}: start failed: {}",
            stderr(&out)
        );
        let id = stdout(&out).trim().to_owned();
        if want.is_empty() {
            assert!(
                id.starts_with("xxxxxxxx") && id.ends_with("-claude"),
                "{label}: {id}"
            );
            assert!(id.len() <= 128, "{label}: id of {} bytes", id.len());
        } else {
            assert_eq!(id, format!("{want}-claude"), "{label}");
        }
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{label}: {id:?}"
        );
        let inst = env.instance(&id);
        assert_eq!(inst["project_path"], dir.to_str().unwrap(), "{label}");
        assert_eq!(inst["runtime"], "host", "{label}");
        started.push((id, dir));
    }
    // The same basename in another directory is a different instance.
    let other = env.project("elsewhere/my project");
    let out = start(&other);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "my_project-2-claude");
    started.push(("my_project-2-claude".into(), other));

    // Everything the instances got lives inside the state dir.
    for (id, dir) in &started {
        assert!(
            env.state().join("states").join(id).is_dir(),
            "{id}: the instance's state dir"
        );
        assert!(
            env.state().join("logs").join(format!("{id}.log")).is_file(),
            "{id}: log"
        );
        // find by path now answers with exactly this instance.
        let out = env.run(&["find", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{id}: find: {}", stderr(&out));
        let line = stdout(&out);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with(&format!("{id}\t")), "{line}");
        // The prompt in that directory names the agent.
        let out = env
            .cmd()
            .current_dir(dir)
            .env("PWD", dir)
            .arg("prompt")
            .output()
            .unwrap();
        assert!(
            stdout(&out).contains("claude"),
            "{id}: prompt: {}{}",
            stdout(&out),
            stderr(&out)
        );
        // A project dir never gets our files.
        let inside: Vec<String> = tree(dir)
            .into_iter()
            .filter(|n| !n.starts_with("elsewhere"))
            .collect();
        assert!(inside.is_empty(), "{id}: files in the project: {inside:?}");
    }
    let prompt = std::fs::read_to_string(env.state().join("prompt.tsv")).unwrap();
    for (id, dir) in &started {
        let line = prompt
            .lines()
            .find(|l| l.split('\t').nth(1) == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not in prompt.tsv:\n{prompt}"));
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 6, "{line:?}");
        assert_eq!(cols[0], dir.to_str().unwrap());
    }
    let names: Vec<String> = tree(env.state())
        .into_iter()
        .filter(|n| {
            !n.starts_with("states/")
                && !n.starts_with("logs/")
                && !n.starts_with("activity/")
                && !n.starts_with(".tmp-")
        })
        .collect();
    for n in &names {
        assert!(
            [
                "activity",
                "config.toml",
                "logs",
                "prompt.tsv",
                "registry.json",
                "registry.lock",
                "states",
                "sockets",
            ]
            .contains(&n.as_str()),
            "unexpected file in the state dir: {n}"
        );
    }
    assert!(
        !env.projects.path().join("pwned").exists(),
        "a shell ran a path"
    );

    // A path with a newline cannot be a project: usage error, nothing kept.
    let bad = env.project("line\nbreak");
    let out = start(&bad);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("newline"), "{}", stderr(&out));
    assert_eq!(
        env.registry()["instances"].as_object().unwrap().len(),
        started.len()
    );

    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success(), "stop --all: {}", stderr(&out));
    let listed = env.ok(&["list", "--status", "running", "--quiet"]);
    assert!(listed.trim().is_empty(), "still running: {listed}");
}

/// An id names its agent in its suffix: `--id foo-claude` with `--mode
/// gemini` would run gemini under a claude id (and claude's config).
#[test]
fn an_id_whose_mode_differs_from_mode_is_refused() {
    let env = Env::new();
    let dir = env.project("modes");
    let out = env.run_in(
        &dir,
        &[
            "start",
            "--mode",
            "gemini",
            "--id",
            "foo-claude",
            "--detach",
            "--runtime",
            "host",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("foo-claude") && err.contains("gemini"),
        "{err}"
    );
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
}
