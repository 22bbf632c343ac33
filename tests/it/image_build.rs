//! `image build` with a base override and extra CA certificates, its report
//! when the build has no network, and the terminal variables an instance
//! receives.

use crate::common;

use crate::common::{stderr, Env};
use crate::docker_support::*;

/// The locally built Debian + Node base (.ci/base-image), if present.
fn base_image() -> Option<String> {
    let tag = std::env::var("AI_SESSIONS_BASE_IMAGE")
        .unwrap_or_else(|_| "ai-sessions-ci/base:trixie".to_owned());
    if docker(&["image", "inspect", &tag]).status.success() {
        return Some(tag);
    }
    let msg = format!("no base image {tag} (built by .ci/base-image)");
    if std::env::var("AI_SESSIONS_REQUIRE_REAL_AGENTS").as_deref() == Ok("1") {
        panic!("{msg} and AI_SESSIONS_REQUIRE_REAL_AGENTS=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

#[test]
fn a_ca_certificate_that_is_missing_or_not_pem_is_refused_before_building() {
    let env = Env::new();
    let not_pem = env.state().join("not-a-cert.crt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for (path, says) in [
        ("/nonexistent/proxy.crt".to_owned(), "No such file"),
        (not_pem.display().to_string(), "not a PEM certificate"),
    ] {
        env.write_config(&format!("[images]\nca_certificates = [\"{path}\"]\n"));
        let out = env
            .cmd()
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(["image", "build", "claude"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(
            err.contains("images.ca_certificates") && err.contains(&path) && err.contains(says),
            "{err}"
        );
    }
}

#[test]
fn without_network_each_agent_says_what_it_needs_and_the_build_goes_on() {
    require_docker!();
    let Some(base) = base_image() else { return };
    let env = Env::new();
    let tag = env.unique("nonet");
    env.write_config(&format!(
        "[images]\nca_certificates = [\"/etc/ssl/certs/ca-certificates.crt\"]\n\n\
         [agents.claude]\nimage = \"ai-sessions-test/{tag}-claude:latest\"\n\n\
         [agents.gemini]\nimage = \"ai-sessions-test/{tag}-gemini:latest\"\n"
    ));
    let out = env
        .cmd()
        .args([
            "image",
            "build",
            "--base",
            &base,
            "--network",
            "none",
            "--no-cache",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for agent in ["claude", "gemini"] {
        assert!(
            err.contains(&format!(
                "building ai-sessions-test/{tag}-{agent}:latest for {agent} needs network access"
            )) && err.contains(&format!("{agent}'s CLI from the npm registry")),
            "{agent}: {err}"
        );
        assert!(!docker(&[
            "image",
            "inspect",
            &format!("ai-sessions-test/{tag}-{agent}:latest")
        ])
        .status
        .success());
    }
    assert!(
        err.contains("2 of 2 images not built (claude, gemini)"),
        "{err}"
    );
    // It built on the base asked for, not the Dockerfile's default.
    assert!(err.contains(&format!("on {base}")), "{err}");
}

#[test]
fn the_terminal_and_locale_reach_the_container() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("term");
    let proj = env.project(&name);
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("TERM", "xterm-256color")
        .env("COLORTERM", "truecolor")
        .env("LANG", "C.UTF-8")
        .env("LC_TIME", "C")
        .env_remove("LC_ALL")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = format!("{name}-claude");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inspect = common::inspect(&cid).unwrap();
    let vars: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for want in [
        "TERM=xterm-256color",
        "COLORTERM=truecolor",
        "LANG=C.UTF-8",
        "LC_TIME=C",
    ] {
        assert!(vars.contains(&want), "{want} missing from {vars:?}");
    }
    env.ok(&["stop", &id]);
}

/// `--base` with a base whose user is not root, and with one that already
/// has an `agent` user: the shipped Dockerfiles set their user up (no
/// `Permission denied`, no `useradd` clash) and, offline, stop only at
/// what needs the network, naming both ways out.
#[test]
fn a_base_with_its_own_user_builds_up_to_the_network() {
    require_docker!();
    let Some(base) = base_image() else { return };
    let env = Env::new();
    let tag = env.unique("userbase");
    for (suffix, setup) in [
        (
            "uid1000",
            "RUN useradd --uid 1000 --create-home dev\nUSER 1000\n",
        ),
        (
            "agent",
            "RUN useradd --uid 1234 --create-home agent && touch /home/agent/mine\nUSER agent\n",
        ),
    ] {
        let derived = format!("ai-sessions-test/{tag}-{suffix}:latest");
        let mut child = std::process::Command::new("docker")
            .args(["build", "--network", "none", "-t", &derived, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("FROM {base}\n{setup}").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let _gone = RemoveImage(derived.clone());

        env.write_config(&format!(
            "[agents.claude]\nimage = \"ai-sessions-test/{tag}-{suffix}-claude:latest\"\n"
        ));
        let out = env
            .cmd()
            .args([
                "image",
                "build",
                "claude",
                "--base",
                &derived,
                "--network",
                "none",
                "--no-cache",
            ])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("uid=1000(agent) gid=1000(agent)"),
            "{suffix}: the user step ran: {err}"
        );
        assert!(!err.contains("Permission denied"), "{suffix}: {err}");
        assert!(
            !err.contains("user 'agent' already exists") && !err.contains("UID 1000 is not unique"),
            "{suffix}: {err}"
        );
        assert!(err.contains("needs network access"), "{suffix}: {err}");
        assert!(
            err.contains("agents.claude.image") && err.contains("--base"),
            "{suffix}: both ways out: {err}"
        );
    }
    // `doctor` names them too for the image it misses.
    let out = env.run(&["doctor"]);
    let text = format!("{}{}", common::stdout(&out), stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains("claude image:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("missing")
            && line.contains("--base LOCAL_IMAGE")
            && line.contains("config set --global agents.claude.image IMAGE"),
        "{line}"
    );
}

/// Removes an image on drop (a test's derived base).
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}
