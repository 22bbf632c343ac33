//! The real agent CLIs (Claude Code, Gemini CLI) in their shipped images,
//! driven through the `claude`/`gemini` shell functions in a real bash in
//! tmux: the TUI renders, input reaches it, a resize redraws it, detach and
//! re-attach keep the same process, quitting stops the instance, and an
//! agent's own failure message and exit code reach the user intact.
//!
//! The images are built by `.ci/run` (`image build --base` on a local Debian
//! base). Without them these tests skip loudly; AI_SESSIONS_REQUIRE_REAL_AGENTS=1
//! makes that a failure.

use crate::common;

use crate::common::{wait_until, Env, BIN};
use crate::docker_support::*;
use crate::tmux_support::Tmux;
use std::path::Path;
use std::time::{Duration, Instant};

/// Node CLIs start slowly on a busy machine.
const SLOW: Duration = Duration::from_secs(120);

/// A bash with the plugin loaded, in a tmux server of its own (120x40).
struct Term {
    // Field order = drop order: the server (and bash) go before the dir.
    t: Tmux,
    _dir: tempfile::TempDir,
}

impl Term {
    fn start(env: &Env, project: &Path) -> Term {
        let dir = tempfile::Builder::new()
            .prefix("ais-real")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let rc = dir.path().join("bashrc");
        std::fs::write(
            &rc,
            format!(
                "PS1='bash> '\ncd '{}'\neval \"$('{BIN}' init bash)\"\n",
                project.display()
            ),
        )
        .unwrap();
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        let mut envs: Vec<(String, String)> = vec![
            ("HOME".into(), home.display().to_string()),
            (
                "PATH".into(),
                format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin"),
            ),
            ("TERM".into(), "xterm-256color".into()),
            ("COLORTERM".into(), "truecolor".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("AI_SESSIONS_HOME".into(), env.state().display().to_string()),
        ];
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            envs.push(("DOCKER_HOST".into(), h));
        }
        let rc = rc.to_str().unwrap();
        let argv = ["bash", "--noprofile", "--rcfile", rc, "-i"];
        let t = Tmux::start_sized(dir.path(), &envs, &argv, (120, 40));
        let term = Term { t, _dir: dir };
        term.wait("the prompt", Duration::from_secs(20), |p| {
            p.contains("bash>")
        });
        term
    }

    fn keys(&self, keys: &[&str]) {
        self.t.keys(keys);
    }

    fn line(&self, text: &str) {
        self.t.line(text);
    }

    /// The visible screen (what the user sees now).
    fn screen(&self) -> String {
        self.t.screen()
    }

    /// The screen with its scrollback, wrapped lines joined.
    fn history(&self) -> String {
        self.t.capture_back(5000)
    }

    fn wait(&self, what: &str, limit: Duration, pred: impl FnMut(&str) -> bool) -> String {
        self.t.wait_screen(what, limit, pred)
    }

    /// Whether the pane's terminal is in the attach's raw mode (signals off):
    /// keys typed before that reach the shell or kill the starting client,
    /// and bash's readline leaves signals on.
    fn raw(&self) -> bool {
        self.t.signals_off()
    }

    fn resize(&self, cols: u16, rows: u16) {
        self.t.resize(cols, rows);
    }
}

fn config(env: &Env, claude: &str, gemini: &str) {
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"5s\"\n\n\
         [agents.claude]\nimage = \"{claude}\"\n\n[agents.gemini]\nimage = \"{gemini}\"\n"
    ));
}

/// (State.Pid, State.StartedAt) of an instance's container.
fn main_process(env: &Env, id: &str) -> (u64, String) {
    let cid = env.instance(id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = common::inspect(&cid).unwrap();
    (
        i["State"]["Pid"].as_u64().unwrap(),
        i["State"]["StartedAt"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn claude_code_cannot_reach_its_service_and_says_so_with_its_exit_code() {
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let env = Env::new();
    config(&env, &image, &image);
    let name = env.unique("realc");
    let proj = env.project(&name);
    let t = Term::start(&env, &proj);
    t.line("claude; echo \"claude-exit=$?\"");
    // (The typed line holds `claude-exit=` too, but never at its start.)
    t.wait("claude to give up", SLOW, |s| {
        s.lines().any(|l| l.starts_with("claude-exit="))
    });
    let all = t.history();
    // Its welcome screen, then its own words and its own exit code.
    assert!(all.contains("Welcome to Claude Code"), "{all}");
    assert!(
        all.contains("Unable to connect to Anthropic services"),
        "Claude Code's message did not reach the user:\n{all}"
    );
    assert!(all.lines().any(|l| l == "claude-exit=1"), "{all}");
    assert!(
        all.contains("Failed to connect to api.anthropic.com"),
        "{all}"
    );
    let id = format!("{name}-claude");
    let inst = env.instance(&id);
    assert_eq!(inst["exit_code"], 1, "{inst}");
    assert_ne!(inst["status"], "running", "{inst}");
}

#[test]
fn gemini_cli_renders_takes_input_redraws_detaches_and_quits() {
    require_docker!();
    let Some(image) = real_image("gemini") else {
        return;
    };
    let env = Env::new();
    config(&env, &image, &image);
    let name = env.unique("realg");
    let proj = env.project(&name);
    let id = format!("{name}-gemini");
    let t = Term::start(&env, &proj);

    // Renders: its first question is whether to trust this folder.
    t.line("gemini");
    let s = t.wait("Gemini CLI's folder trust question", SLOW, |s| {
        s.contains("Do you trust the files in this folder?")
    });
    assert!(s.contains("Gemini CLI"), "{s}");
    assert!(
        !t.history().contains("256-color support not detected"),
        "{s}"
    );

    // Input reaches it: trusting the folder leads to the sign-in question.
    t.keys(&["Enter"]);
    t.wait("the sign-in question", SLOW, |s| {
        s.contains("How would you like to authenticate") || s.contains("Login with Google")
    });
    let first = main_process(&env, &id);

    // Resize: it redraws to the new width.
    let wide = t.screen();
    t.resize(80, 30);
    let narrow = t.wait("a redraw at 80 columns", Duration::from_secs(30), |s| {
        s != wide && s.contains("authenticate")
    });
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");

    // Detach: the shell is back, the agent keeps running.
    t.keys(&["C-p", "C-q"]);
    t.wait(
        "the shell prompt after detaching",
        Duration::from_secs(20),
        |s| s.lines().any(|l| l.trim_end().ends_with("bash>")),
    );
    assert_eq!(env.instance(&id)["status"], "running");

    // Re-attach: the same process, its screen drawn again. The old screen
    // says "authenticate" too until `clear` runs: wait for the attach.
    t.line("clear; gemini");
    t.wait("the sign-in question again", Duration::from_secs(30), |s| {
        s.contains("authenticate") && t.raw()
    });
    assert_eq!(
        main_process(&env, &id),
        first,
        "re-attach started a new process"
    );

    // Quit: ctrl-c twice ends Gemini CLI ("Press Ctrl+C again to exit");
    // the instance stops and the shell is back.
    let prompt = |s: &str| s.lines().any(|l| l.trim_end().ends_with("bash>"));
    let end = Instant::now() + Duration::from_secs(60);
    while !prompt(&t.screen()) && Instant::now() < end {
        t.keys(&["C-c"]);
        std::thread::sleep(Duration::from_millis(700));
    }
    t.wait(
        "the shell prompt after quitting",
        Duration::from_secs(5),
        prompt,
    );
    assert!(
        wait_until(Duration::from_secs(30), || env.instance(&id)["status"]
            != "running"),
        "{}",
        env.instance(&id)
    );
}

#[test]
fn the_images_trust_the_configured_ca_certificates() {
    require_docker!();
    for agent in ["claude", "gemini"] {
        let Some(image) = real_image(agent) else {
            return;
        };
        // .ci/run builds them with the machine's CA bundle as the extra one.
        let out = docker(&[
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            "test -s /usr/local/share/ca-certificates/ai-sessions/extra-0.crt && echo \"$NODE_EXTRA_CA_CERTS\"",
        ]);
        assert!(
            out.status.success(),
            "{agent}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "/etc/ssl/certs/ca-certificates.crt"
        );
    }
}
