//! The daily loop's smaller things (issue "The daily loop", item 8), one
//! per test: messages that say only what is true, typos answered with the
//! closest id, a directory of repositories not mounted without a word.

use crate::common::*;

/// A host agent that just sleeps: a live instance without an engine.
fn sleeper_config(env: &Env) {
    env.write_config(
        "[global]\nruntime = \"host\"\n\n[agents.claude]\ncommand = [\"sleep\", \"300\"]\n",
    );
}

fn start_sleeper(env: &Env, name: &str) -> String {
    let proj = env.project(&env.unique(name));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// `config set` names a restart only for the running instances the key is
/// fixed in: not for keys read when used (alerts), nor for another or a
/// new agent's section.
#[test]
fn config_set_says_next_start_only_when_true() {
    let env = Env::new();
    sleeper_config(&env);
    let a = start_sleeper(&env, "cfga");
    let b = start_sleeper(&env, "cfgb");
    let set = |key: &str, value: &str| {
        let out = env.run(&["config", "set", "--global", key, value]);
        let err = stderr(&out);
        assert!(out.status.success(), "{key}: {err}");
        err
    };
    for (key, value) in [
        ("alerts.command", "[\"true\"]"),
        ("alerts.sustain", "45s"),
        ("agents.gemini.command", "[\"sleep\", \"5\"]"),
        ("agents.aider.command", "[\"sleep\", \"5\"]"),
        ("global.max_instances", "9"),
    ] {
        let err = set(key, value);
        assert!(
            !err.contains("next start") && !err.contains("restart"),
            "{key} does not wait for a restart: {err}"
        );
    }
    let err = set("agents.claude.env_passthrough", "[\"FOO\"]");
    assert!(
        err.contains("2 instances are running") && err.contains(&a) && err.contains(&b),
        "{err}"
    );
    let err = set("resources.memory.limit", "2Gi");
    assert!(err.contains("next start"), "{err}");
    env.ok(&["stop", "--force", &a, &b]);
}

/// `doctor` does not call a config file that is not there "ok config:
/// <file>": it says the built-in defaults apply.
#[test]
fn doctor_without_a_config_file_says_defaults_apply() {
    let env = Env::new();
    let path = env.state().join("config.toml");
    std::fs::remove_file(&path).unwrap();
    let out = env.run(&["doctor"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains("config:"))
        .unwrap_or_else(|| panic!("a config line: {text}"));
    assert!(
        line.contains("built-in defaults") && line.contains("no "),
        "{line}"
    );
    assert!(
        !line.trim_end().ends_with("config.toml"),
        "not reported as a file: {line}"
    );
    // With the file, its path.
    env.write_config("");
    let out = env.run(&["doctor"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains(&format!("ok   config: {}", path.display())),
        "{text}"
    );
}

/// A word that is not even an id (`show apiclaude`) gets the closest id,
/// as an unknown well-formed one does.
#[test]
fn show_of_a_malformed_id_says_did_you_mean() {
    let env = Env::new();
    let reg = serde_json::json!({"instances": {"api-claude": {
        "id": "api-claude", "project_path": "/nonexistent/api", "project_name": "api",
        "mode": "claude", "status": "stopped", "port": 9100, "runtime": "host",
    }}});
    std::fs::write(env.state().join("registry.json"), reg.to_string()).unwrap();
    for cmd in ["show", "stop", "logs"] {
        let out = env.run(&[cmd, "apiclaude"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("invalid instance id"), "{cmd}: {err}");
        assert!(err.contains("did you mean api-claude?"), "{cmd}: {err}");
    }
    // Far from every id: no guess.
    let err = stderr(&env.run(&["show", "zzzzzzzzzz"]));
    assert!(!err.contains("did you mean"), "{err}");
}

/// From a directory that is not a repository but holds several, starting
/// refuses with the ways on; `--here` (and a named path) mount it whole.
#[test]
fn a_directory_of_repositories_is_refused_with_the_way_out() {
    let env = Env::new();
    sleeper_config(&env);
    let src = env.project(&env.unique("src"));
    for r in ["api", "web", "docs"] {
        std::fs::create_dir(src.join(r)).unwrap();
        git(&src.join(r), &["init", "-q"]);
    }
    std::fs::create_dir(src.join("notes")).unwrap();
    for args in [
        &["start", "--detach", "--mode", "claude"][..],
        &["run", "claude", "--detach"][..],
    ] {
        let out = env.run_in(&src, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "{} holds 3 git repositories (api, docs, web) and is not one",
                src.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("cd into one") && err.contains("--here"),
            "{err}"
        );
    }
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
    // Inside one of them: that repository.
    let out = env.run_in(&src.join("api"), &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let in_api = stdout(&out).trim().to_owned();
    assert_eq!(
        env.instance(&in_api)["project_path"],
        src.join("api").display().to_string()
    );
    // `--here`, as the agent function passes it: the whole directory.
    let pid = std::process::id().to_string();
    let out = env.run_in(
        &src,
        &[
            "run",
            "claude",
            "--shell-pid",
            &pid,
            "--",
            "--here",
            "--detach",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = env.registry()["instances"]
        .as_object()
        .unwrap()
        .values()
        .find(|i| i["project_path"] == src.display().to_string())
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .expect("an instance of the whole directory");
    env.ok(&["stop", "--force", &in_api, &whole]);
}

/// What an agent writes in its state keeps the agent's modes (0644 here);
/// the 0700 directories above it keep it private, as the README says.
#[test]
fn agent_state_files_are_private_through_their_directories_as_the_readme_says() {
    use crate::docker_support::docker_ok;
    use std::os::unix::fs::PermissionsExt;
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let proj = env.project(&env.unique("perm"));
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    let inside = env.ok(&["config", "get", &id, "agents.claude.state_dir"]);
    docker_ok(&[
        "exec",
        &cid,
        "sh",
        "-c",
        &format!(
            "umask 022 && mkdir -p {d}/projects && echo hi >{d}/history.jsonl",
            d = inside.trim()
        ),
    ]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let states = env.state().join("states");
    let mine = states.join(&id);
    assert_eq!(mode(&mine.join("history.jsonl")), 0o644, "the agent's mode");
    for dir in [env.state(), states.as_path(), mine.as_path()] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let said = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains("keeps the mode the agent gives it")
            && said.contains("0700 directories above it keep it yours alone"),
        "the README says what is true"
    );
    env.ok(&["stop", "--force", &id]);
}

/// A port is shown where it is published: a stopped instance's port may
/// be another's by now (a running instance took it), and `--egress none`
/// publishes nothing; `list`, `show` and the start's message say so, as
/// the dashboard does.
#[test]
fn list_show_and_start_show_a_port_only_where_it_is_published() {
    require_docker!();
    let env = Env::new();
    crate::docker_support::docker_config(&env, "");
    let start = |name: &str, extra: &[&str]| {
        let proj = env.project(&env.unique(name));
        let mut c = env.cmd();
        c.current_dir(&proj)
            .env("FAKE_AGENT_STAY", "1")
            .args(["start", "--mode", "claude", "--detach"])
            .args(extra);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out).trim().to_owned(), stderr(&out))
    };
    let (old, said) = start("portold", &[]);
    let port = env.instance(&old)["port"].as_u64().unwrap().to_string();
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    env.ok(&["stop", "--force", &old]);
    let (new, _) = start("portnew", &["--port", &port]);
    let (closed, said) = start("portnone", &["--egress", "none"]);
    assert!(
        !said.contains("127.0.0.1:"),
        "egress none publishes no port: {said}"
    );
    assert!(said.contains("no port is published"), "{said}");

    let out = env.ok(&["list"]);
    let cell = |id: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(id))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(cell(&new), port, "{out}");
    assert_eq!(cell(&old), "-", "the port is another's now:\n{out}");
    assert_eq!(cell(&closed), "-", "{out}");
    let show = |id: &str| -> String {
        env.ok(&["show", id])
            .lines()
            .find(|l| l.starts_with("port:"))
            .unwrap_or_default()
            .to_owned()
    };
    let s = show(&old);
    assert!(
        s.contains("not published while stopped") && s.contains(&port),
        "{s}"
    );
    assert!(show(&closed).contains("egress none"), "{}", show(&closed));
    assert!(
        show(&new).ends_with(&format!("127.0.0.1:{port}")),
        "{}",
        show(&new)
    );
    env.ok(&["stop", "--force", &new, &closed]);
}
