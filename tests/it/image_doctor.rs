//! `image build` streams a real build through the engine; `doctor` reports
//! each part, OK or what to do.

use crate::common;

use crate::common::{stderr, stdout, Env};
use crate::tmux_support::Shell;
use std::process::Command;

#[test]
fn image_build_streams_a_real_build_from_a_build_context() {
    require_docker!();
    let env = Env::new();
    let ctx = env.projects.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent");
    for f in ["Dockerfile", "fake-agent"] {
        std::fs::copy(fixtures.join(f), ctx.join(f)).unwrap();
    }
    let busybox = which::which("busybox").expect("busybox-static is installed");
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    let tag = format!("ai-sessions-built-{}:latest", env.token.to_lowercase());
    env.write_config(&format!(
        "[agents.claude]\nimage = \"{tag}\"\nbuild_context = \"{}\"\n",
        ctx.display()
    ));
    let out = env.run(&["image", "build", "claude"]);
    let _cleanup = RemoveImage(tag.clone());
    assert!(out.status.success(), "image build failed: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("building {tag}")), "{err}");
    assert!(err.contains("Step 1/"), "build progress is streamed: {err}");
    assert!(err.contains(&format!("built {tag}")), "{err}");
    let inspect = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "the image exists after the build");
}

#[test]
fn image_build_without_a_dockerfile_says_what_to_do() {
    let env = Env::new();
    env.write_config("[agents.codex]\ncommand = [\"codex\"]\nimage = \"x/codex\"\n");
    let out = env.run(&["image", "build", "codex"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("build_context"), "{}", stderr(&out));
}

#[test]
fn doctor_reports_engine_images_and_shell_integration() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let home = env.projects.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The user's shell: zsh when installed, else bash. Doctor asks a new
    // one what it loads.
    let shell = if Shell::Zsh.installed() {
        Shell::Zsh
    } else {
        Shell::Bash
    };
    let (sh, rc) = (shell.name(), shell.rc_file());
    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display());
    let doctor = || {
        env.cmd()
            .env("HOME", &home)
            .env("SHELL", format!("/bin/{sh}"))
            .env("PATH", &path)
            .arg("doctor")
            .output()
            .unwrap()
    };
    let out = doctor();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("engine:")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("claude image")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("FIX  {sh}: not loaded")))
            // The line to add follows, on its own line.
            && text.contains(&format!("init {sh})")),
        "a new {sh} does not load the integration: {text}"
    );
    assert_eq!(out.status.code(), Some(1), "a problem makes doctor exit 1");

    std::fs::write(home.join(rc), format!("eval \"$(ai-sessctl init {sh})\"\n")).unwrap();
    let text = stdout(&doctor());
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("ok   {sh}: loaded"))),
        "{text}"
    );

    let out = env
        .cmd()
        .env("HOME", &home)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("doctor")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FIX") && l.contains("engine:")),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}
