//! The engine is found as the docker CLI finds it: a docker context (the
//! config's `currentContext`, or `DOCKER_CONTEXT`) read from a real context
//! store in a temporary `DOCKER_CONFIG`; errors name the endpoint and where it
//! came from; a remote engine gets a clone of the project, never a mount.

use crate::common::{stderr, stdout, Env};
use crate::docker_support::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The unix socket of the engine the other tests use.
fn engine_socket() -> Option<PathBuf> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let path = match host.strip_prefix("unix://") {
        Some(p) => PathBuf::from(p),
        None if host.is_empty() => PathBuf::from("/var/run/docker.sock"),
        None => return None,
    };
    path.exists().then_some(path)
}

/// A docker config directory with contexts `name -> host` and, when given,
/// `currentContext`.
fn docker_config_dir(contexts: &[(&str, &str)], current: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, host) in contexts {
        let hex: String = Sha256::digest(name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let meta = dir.path().join("contexts/meta").join(hex);
        std::fs::create_dir_all(&meta).unwrap();
        let json = serde_json::json!({
            "Name": name,
            "Metadata": {"Description": "ai-sessions test"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
    }
    if let Some(c) = current {
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::json!({"auths": {}, "currentContext": c}).to_string(),
        )
        .unwrap();
    }
    dir
}

/// `ai-sessctl ARGS` in `dir` with only the docker config to go by.
fn via_config(
    env: &Env,
    config: &Path,
    dir: &Path,
    context: Option<&str>,
    args: &[&str],
) -> Output {
    let mut c: Command = env.cmd();
    c.current_dir(dir)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", config)
        .args(args);
    if let Some(name) = context {
        c.env("DOCKER_CONTEXT", name);
    }
    c.output().unwrap()
}

#[test]
fn the_current_context_of_the_docker_config_reaches_the_engine() {
    require_docker!();
    let Some(sock) = engine_socket() else {
        eprintln!("\n*** SKIPPED: the engine is not behind a local unix socket ***\n");
        return;
    };
    let env = Env::new();
    docker_config(&env, "");
    let live = format!("unix://{}", sock.display());
    let config = docker_config_dir(&[("ai-live", &live)], Some("ai-live"));
    let name = env.unique("ctx");
    let proj = env.project(&name);
    let id = format!("{name}-claude");

    let out = via_config(&env, config.path(), &proj, None, &["doctor"]);
    let report = stdout(&out);
    let engine_line = report.lines().find(|l| l.contains("engine:")).unwrap_or("");
    let config_json = config.path().join("config.json");
    assert!(
        engine_line.starts_with("ok")
            && engine_line.contains(&live)
            && engine_line.contains("docker context \"ai-live\"")
            && engine_line.contains(config_json.to_str().unwrap()),
        "doctor should name the endpoint and the context it came from:\n{report}"
    );

    let out = via_config(
        &env,
        config.path(),
        &proj,
        None,
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "docker",
        ],
    );
    assert!(
        out.status.success(),
        "start through the context: {}",
        stderr(&out)
    );
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(container_state(&cid).as_deref(), Some("running"));

    let out = via_config(&env, config.path(), &proj, None, &["list"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = via_config(&env, config.path(), &proj, None, &["stop", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.instance(&id)["status"], "stopped");
    assert!(!container_exists(&cid));
}

#[test]
fn a_dead_context_socket_is_reported_with_its_source() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let gone = tempfile::tempdir().unwrap();
    let dead = format!("unix://{}/dead.sock", gone.path().display());
    let live = engine_socket()
        .map(|p| format!("unix://{}", p.display()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    // The config's current context is live; DOCKER_CONTEXT picks the dead one.
    let config = docker_config_dir(&[("ai-live", &live), ("ai-dead", &dead)], Some("ai-live"));
    let proj = env.project(&env.unique("dead"));

    let out = via_config(
        &env,
        config.path(),
        &proj,
        Some("ai-dead"),
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "docker",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "engine unavailable: {err}");
    assert!(
        err.contains(&dead) && err.contains("docker context \"ai-dead\", set by DOCKER_CONTEXT"),
        "the error names the endpoint and its source:\n{err}"
    );
    assert!(!err.contains("ai-live"), "{err}");

    let out = via_config(&env, config.path(), &proj, Some("ai-dead"), &["doctor"]);
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FIX") && l.contains(&dead) && l.contains("DOCKER_CONTEXT")),
        "{report}"
    );

    // A context that does not exist: named, with where it was asked for.
    let out = via_config(&env, config.path(), &proj, Some("ai-nowhere"), &["doctor"]);
    let report = stdout(&out);
    assert!(
        report.lines().any(|l| l.starts_with("FIX")
            && l.contains("\"ai-nowhere\"")
            && l.contains("not found")),
        "{report}"
    );
}

#[test]
/// An engine on another machine cannot mount the project: the start
/// clones it instead (saying so), which needs a git repository.
fn a_remote_engine_clones_and_a_project_outside_git_is_refused() {
    let env = Env::new();
    docker_config(&env, "");
    let config = docker_config_dir(
        &[("ai-far", "ssh://agent@build-box.invalid")],
        Some("ai-far"),
    );
    let proj = env.project(&env.unique("far"));

    let out = via_config(
        &env,
        config.path(),
        &proj,
        None,
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "docker",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("ssh://agent@build-box.invalid")
            && err.contains("docker context \"ai-far\"")
            && err.contains("another machine")
            && err.contains("cannot be mounted")
            && err.contains("using clone mode")
            && err.contains("is not in one"),
        "{err}"
    );
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));

    // DOCKER_HOST=ssh://… says the same, naming DOCKER_HOST.
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("DOCKER_HOST", "ssh://agent@build-box.invalid")
        .args([
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "docker",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("(from DOCKER_HOST)") && err.contains("another machine"),
        "{err}"
    );
}
