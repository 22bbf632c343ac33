//! `top` in a real terminal (tmux): the full-screen table shows the
//! instances with live figures, sort keys work, `q` restores the screen.

use crate::common;

use crate::common::Env;
use std::process::Command;
use std::time::Duration;

struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap()
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }
    fn wait_for(&self, what: &str) -> String {
        let mut last = String::new();
        let found = common::wait_until(Duration::from_secs(15), || {
            last = self.screen();
            last.contains(what)
        });
        assert!(found, "waited for {what:?}; screen:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_shows_instances_live_and_restores_the_screen() {
    require_docker!();
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "tmux is missing"
        );
        eprintln!("*** SKIPPED top test: tmux is missing ***");
        return;
    }
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("topper");
    let dir = env.project(&name);
    let out = env.run_in(&dir, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let id = format!("{name}-claude");

    let tmux = Tmux(format!("ais-top-{}", env.token));
    let shell = format!(
        "env AI_SESSIONS_HOME='{}' TERM=xterm-256color bash --norc --noprofile",
        env.state().display()
    );
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "160",
        "-y",
        "30",
        &shell,
    ]);
    tmux.cmd(&["send-keys", "-t", "t", "echo before-top", "Enter"]);
    tmux.wait_for("before-top");
    tmux.cmd(&[
        "send-keys",
        "-t",
        "t",
        &format!("{} top", common::BIN),
        "Enter",
    ]);
    let screen = tmux.wait_for("1 running of 1");
    assert!(screen.contains(&id), "{screen}");
    assert!(screen.contains("running"), "{screen}");
    // Live figures arrive from the background sampler.
    let screen = tmux.wait_for("%");
    assert!(screen.contains("MiB") || screen.contains("KiB"), "{screen}");
    assert!(
        !screen.contains("before-top"),
        "top uses the alternate screen:\n{screen}"
    );
    tmux.cmd(&["send-keys", "-t", "t", "m"]);
    tmux.cmd(&["send-keys", "-t", "t", "q"]);
    let screen = tmux.wait_for("before-top");
    assert!(
        !screen.contains("1 running of 1"),
        "screen restored:\n{screen}"
    );
    tmux.cmd(&["send-keys", "-t", "t", "echo rc=$?", "Enter"]);
    tmux.wait_for("rc=0");
}
