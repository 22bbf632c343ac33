//! `config get|set|--edit` through the real binary: layers, validation,
//! comments kept, invalid input never written.

use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn file_state(p: &Path) -> (Vec<u8>, i64, i64, u64) {
    let m = std::fs::metadata(p).unwrap();
    (
        std::fs::read(p).unwrap(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
    )
}

fn get(env: &Env, scope: &str, key: &str) -> String {
    let out = if scope == "--global" {
        env.ok(&["config", "get", "--global", key])
    } else {
        env.ok(&["config", "get", scope, key])
    };
    out.trim_end_matches('\n').to_owned()
}

/// Runs and expects failure with `code`; returns stderr.
fn fails(env: &Env, args: &[&str], code: i32) -> String {
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?} should fail with {code}:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("ai-sessctl: error: ") || err.starts_with("error: "),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn global_get_and_set_keep_comments_and_other_keys() {
    let env = Env::new();
    env.write_config(
        "# my precious comment\n[resources.memory]\n# keep me too\nlimit = \"1Gi\" # inline\n",
    );
    assert_eq!(get(&env, "--global", "resources.memory.limit"), "1Gi");
    assert_eq!(
        get(&env, "--global", "resources.cpu.limit"),
        "500m",
        "built-in default"
    );
    assert_eq!(get(&env, "--global", "health.check_interval"), "30s");
    assert_eq!(
        get(&env, "--global", "networking.port_range"),
        format!("[{}, {}]", env.port_base, env.port_base + 99)
    );

    env.ok(&["config", "set", "--global", "resources.memory.limit", "2Gi"]);
    assert_eq!(get(&env, "--global", "resources.memory.limit"), "2Gi");
    let text = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    assert!(text.contains("# my precious comment"), "{text}");
    assert!(text.contains("# keep me too"), "{text}");
    assert!(
        text.contains("limit = \"2Gi\" # inline"),
        "plain `key = value` layout: {text}"
    );
    assert!(
        text.contains(&format!(
            "port_range = [{}, {}]",
            env.port_base,
            env.port_base + 99
        )),
        "{text}"
    );
    assert_eq!(
        text.matches("limit").count(),
        1,
        "set replaces, never duplicates: {text}"
    );

    // A key in a table the file does not have yet.
    env.ok(&["config", "set", "--global", "health.check_interval", "45s"]);
    env.ok(&["config", "set", "--global", "global.max_instances", "4"]);
    assert_eq!(get(&env, "--global", "health.check_interval"), "45s");
    assert_eq!(get(&env, "--global", "global.max_instances"), "4");
    let text = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    assert!(text.contains("# my precious comment"), "{text}");
    assert!(
        text.contains("max_instances = 4"),
        "numbers stay numbers: {text}"
    );
    // The result is still a valid file for every other command.
    env.ok(&["port", "alloc"]);
}

#[test]
fn a_fresh_state_dir_gets_the_commented_template() {
    let env = Env::new();
    std::fs::remove_file(env.state().join("config.toml")).unwrap();
    assert_eq!(get(&env, "--global", "resources.memory.limit"), "1Gi");
    env.ok(&["config", "set", "--global", "resources.cpu.limit", "750m"]);
    let path = env.state().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with('#'), "documented template: {text}");
    assert!(text.contains("limit = \"750m\""), "{text}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(get(&env, "--global", "resources.cpu.limit"), "750m");
}

#[test]
fn invalid_values_and_keys_are_refused_and_nothing_is_written() {
    let env = Env::new();
    let path = env.state().join("config.toml");
    let before = file_state(&path);

    let err = fails(
        &env,
        &[
            "config",
            "set",
            "--global",
            "resources.memory.limit",
            "lots",
        ],
        5,
    );
    assert!(
        err.contains("resources.memory.limit"),
        "names the key: {err}"
    );
    assert!(err.contains("\"lots\""), "names the value: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    for (key, value, typo) in [
        ("resources.memroy.limit", "1Gi", "memroy"),
        ("globl.max_instances", "3", "globl"),
        ("global.max_instance", "3", "max_instance"),
        ("resources.cpu.limit", "-5", "-5"),
        ("global.max_instances", "many", "many"),
        ("networking.port_range", "[9000, 80]", "port_range"),
        ("health.check_interval", "soon", "soon"),
        ("global.runtime", "kubernetes", "kubernetes"),
    ] {
        let out = env.run(&["config", "set", "--global", key, value]);
        let err = stderr(&out);
        assert!(
            matches!(out.status.code(), Some(2 | 5)),
            "set {key} {value}: {:?} {err}",
            out.status.code()
        );
        assert!(
            err.contains(typo),
            "set {key} {value}: error does not name {typo:?}: {err}"
        );
    }
    let bad_keys = [".x", "a..b", "a b", "a.$(x)"];
    for key in bad_keys {
        let err = fails(&env, &["config", "set", "--global", key, "1"], 2);
        assert!(err.contains("invalid key"), "{key}: {err}");
    }
    // get of an unknown key is an error too, not an empty line.
    let out = env.run(&["config", "get", "--global", "resources.memroy.limit"]);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());

    assert!(file_state(&path) == before, "config.toml changed");
    // No stray temp files next to it.
    let stray: Vec<_> = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || n.ends_with(".toml") && n != "config.toml")
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn scope_words_are_checked() {
    let env = Env::new();
    // A key without a scope, and a scope with too many words.
    let err = fails(&env, &["config", "get", "resources.cpu.limit"], 2);
    assert!(err.contains("--global"), "{err}");
    fails(&env, &["config", "get", "--global", "a", "b"], 2);
    fails(&env, &["config", "set", "--global", "a"], 2);
    fails(&env, &["config", "get"], 2);
    // An id whose agent is not configured.
    let err = fails(
        &env,
        &["config", "set", "p-nosuchagent", "resources.cpu.limit", "1"],
        3,
    );
    assert!(err.contains("nosuchagent"), "{err}");
    assert!(!env
        .state()
        .join("configs")
        .join("p-nosuchagent.toml")
        .exists());
    // Help shows the real shape.
    let help = env.ok(&["config", "set", "--help"]);
    assert!(help.contains("<ID|--global> <KEY> <VALUE>"), "{help}");
}

#[test]
fn instance_files_override_the_global_one() {
    let env = Env::new();
    env.ok(&["config", "set", "p-claude", "resources.cpu.limit", "250m"]);
    let file = env.state().join("configs").join("p-claude.toml");
    assert!(file.is_file());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(get(&env, "p-claude", "resources.cpu.limit"), "250m");
    assert_eq!(get(&env, "--global", "resources.cpu.limit"), "500m");
    assert_eq!(
        get(&env, "q-claude", "resources.cpu.limit"),
        "500m",
        "another instance"
    );
    // The instance file only holds what was set there.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("memory"), "{text}");
    // `config <ID>` prints the effective settings.
    let all = env.ok(&["config", "p-claude"]);
    assert!(all.contains("limit = \"250m\""), "{all}");
}

#[test]
fn agent_sections_apply_to_their_agent_only() {
    let env = Env::new();
    env.write_config("[agents.claude.resources.cpu]\nlimit = \"1\"\n");
    let claude = get(&env, "p-claude", "resources.cpu.limit");
    assert!(claude == "1" || claude == "1000m", "{claude}");
    assert_eq!(get(&env, "p-gemini", "resources.cpu.limit"), "500m");
    assert_eq!(get(&env, "--global", "resources.cpu.limit"), "500m");
    // The instance file still wins over the agent section.
    env.ok(&["config", "set", "p-claude", "resources.cpu.limit", "250m"]);
    assert_eq!(get(&env, "p-claude", "resources.cpu.limit"), "250m");
    assert_eq!(get(&env, "other-claude", "resources.cpu.limit"), claude);
}

#[test]
fn an_invalid_config_file_is_reported_with_file_and_line() {
    let env = Env::new();
    let path = env.state().join("config.toml");
    std::fs::write(
        &path,
        "[global]\nauto_cleanup = true\nmax_instances = \"many\"\n",
    )
    .unwrap();
    let before = file_state(&path);
    for args in [
        &["config", "get", "--global", "global.auto_cleanup"][..],
        &["config", "get", "p-claude", "resources.cpu.limit"],
        &["port", "alloc"],
    ] {
        let err = fails(&env, args, 5);
        assert!(err.contains("config.toml:3:"), "{args:?}: {err}");
        assert!(err.contains("max_instances"), "{args:?}: {err}");
        assert!(file_state(&path) == before, "{args:?} touched the file");
    }
    // A syntax error too.
    std::fs::write(&path, "[global]\nauto_cleanup = true\n[resources\n").unwrap();
    let err = fails(
        &env,
        &["config", "get", "--global", "global.auto_cleanup"],
        5,
    );
    assert!(err.contains("config.toml:3"), "{err}");
    // Setting a key does not paper over a broken file.
    let err = fails(
        &env,
        &["config", "set", "--global", "global.max_instances", "3"],
        5,
    );
    assert!(err.contains("config.toml"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"[global]\nauto_cleanup = true\n[resources\n"
    );
}

#[test]
fn concurrent_sets_lose_nothing() {
    let env = Env::new();
    let children: Vec<_> = (0..12)
        .map(|i| {
            env.cmd()
                .args([
                    "config",
                    "set",
                    "--global",
                    &format!("ai_config.claude.k{i}"),
                    &i.to_string(),
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for i in 0..12 {
        assert_eq!(
            get(&env, "--global", &format!("ai_config.claude.k{i}")),
            i.to_string(),
            "k{i} was lost"
        );
    }
}

fn editor_script(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join(format!("editor-{}.sh", body.len()));
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn edit_keeps_valid_changes_and_discards_invalid_ones() {
    let env = Env::new();
    let path = env.state().join("config.toml");
    let before = file_state(&path);
    let tools = tempfile::tempdir().unwrap();
    let edit = |script: &Path| {
        env.cmd()
            .env_remove("VISUAL")
            .env("EDITOR", script)
            .args(["config", "--global", "--edit"])
            .output()
            .unwrap()
    };

    // An edit that breaks the file: refused, original kept.
    let bad = editor_script(
        tools.path(),
        "printf '[global]\\nmax_instances = \"many\"\\n' >> \"$1\"",
    );
    let out = edit(&bad);
    assert!(
        !out.status.success(),
        "invalid edit accepted: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("max_instances"), "explains why: {err}");
    assert!(file_state(&path) == before, "invalid edit written");

    // An editor that fails: nothing changes.
    let failing = editor_script(tools.path(), "echo junk >> \"$1\"; exit 3");
    let out = edit(&failing);
    assert!(!out.status.success());
    assert!(file_state(&path) == before, "failed editor's file written");

    // A valid edit is saved, 0600, and takes effect.
    let good = editor_script(
        tools.path(),
        "printf '\\n# edited\\n[health]\\ncheck_interval = \"45s\"\\n' >> \"$1\"",
    );
    let out = edit(&good);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("saved"), "{}", stderr(&out));
    assert_eq!(get(&env, "--global", "health.check_interval"), "45s");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# edited"), "{text}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // An instance file can be edited the same way.
    let out = env
        .cmd()
        .env_remove("VISUAL")
        .env("EDITOR", &good)
        .args(["config", "p-claude", "--edit"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(&env, "p-claude", "health.check_interval"), "45s");
    // No editor temp files are left behind.
    let stray: Vec<_> = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".edit-") || n.starts_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// An alert threshold that could never fire (above its limit) is refused,
/// whichever of the two is set last, with the way out; a percentage of
/// the limit must be one.
#[test]
fn a_threshold_above_its_limit_is_refused_whichever_is_set_last() {
    let env = Env::new();
    let cfg = env.state().join("config.toml");
    env.ok(&["config", "set", "--global", "resources.memory.limit", "1Gi"]);
    let before = std::fs::read(&cfg).unwrap();
    let err = fails(
        &env,
        &[
            "config",
            "set",
            "--global",
            "resources.memory.warning_threshold",
            "2Gi",
        ],
        5,
    );
    assert!(
        err.contains("above the limit (1Gi)") && err.contains("alerts.memory_percent"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cfg).unwrap(), before, "file left unchanged");
    env.ok(&[
        "config",
        "set",
        "--global",
        "resources.memory.warning_threshold",
        "900Mi",
    ]);
    let err = fails(
        &env,
        &[
            "config",
            "set",
            "--global",
            "resources.memory.limit",
            "512Mi",
        ],
        5,
    );
    assert!(err.contains("above the limit (512Mi)"), "{err}");
    assert_eq!(get(&env, "--global", "resources.memory.limit"), "1Gi");
    let err = fails(
        &env,
        &[
            "config",
            "set",
            "--global",
            "alerts.cpu_critical_percent",
            "150",
        ],
        5,
    );
    assert!(err.contains("0 (none) to 100"), "{err}");
}
