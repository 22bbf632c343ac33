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

    fn type_text(&self, text: &str) {
        self.t.type_text(text);
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

/// Whether the shell's prompt is back below the line that ran `command`:
/// the prompt the command was typed at is no answer, and right after
/// typing the screen may not show the command yet.
fn shell_back_after(screen: &str, command: &str) -> bool {
    screen
        .lines()
        .skip_while(|l| !(l.starts_with("bash>") && l.contains(command)))
        .skip(1)
        .any(|l| l.trim_end() == "bash>")
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

/// A Claude Code login on this machine, as a user who has used it: the
/// subscription login in `~/.claude/.credentials.json` and, in
/// `~/.claude.json`, the first-run answers next to things that must never
/// reach a box (an API key the CLI approved, MCP servers with their
/// secrets, the history of other projects). Returns the fake HOME.
fn host_claude_home(trusted: &Path, secret: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let claude = home.path().join(".claude");
    std::fs::create_dir_all(&claude).unwrap();
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 8 * 3_600_000) as u64;
    let login = serde_json::json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{secret}"),
        "refreshToken": format!("sk-ant-ort01-{secret}"),
        "expiresAt": far, "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max"}});
    std::fs::write(claude.join(".credentials.json"), login.to_string()).unwrap();
    let mut projects = serde_json::Map::new();
    projects.insert(
        trusted.to_str().unwrap().to_owned(),
        serde_json::json!({"hasTrustDialogAccepted": true, "allowedTools": [],
            "history": [{"display": format!("my notes {secret}")}],
            "mcpServers": {"db": {"command": "db", "env": {"TOKEN": secret}}}}),
    );
    projects.insert(
        "/somewhere/else".to_owned(),
        serde_json::json!({"hasTrustDialogAccepted": true,
            "history": [{"display": format!("other project {secret}")}]}),
    );
    let cfg = serde_json::json!({
        "numStartups": 41,
        "theme": "light",
        "hasCompletedOnboarding": true,
        "lastOnboardingVersion": "2.0.0",
        "userID": format!("user-{secret}"),
        "primaryApiKey": format!("sk-ant-api03-{secret}"),
        "customApiKeyResponses": {"approved": [secret], "rejected": []},
        "mcpServers": {"mine": {"command": "x", "env": {"KEY": secret}}},
        "oauthAccount": {"emailAddress": format!("{secret}@example.com")},
        "projects": projects,
    });
    std::fs::write(home.path().join(".claude.json"), cfg.to_string()).unwrap();
    home
}

/// `login claude --from-host` on a machine where Claude Code was used: a
/// first `claude` in a box, offline but for the model API (a fake behind
/// the broker), opens at its prompt, not at the theme picker, the sign-in
/// check or the folder trust question the user answered on this machine;
/// and nothing of the host's but those answers reached the box.
#[test]
fn a_login_from_this_machine_opens_claude_at_its_prompt() {
    use crate::broker_support::host_address;
    use crate::fake_model::{FakeApi, Reply};
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "pong from the fake API".into(),
        ..Reply::default()
    });
    let env = Env::new();
    let base = format!("http://{}:{}", host_address(), fake.port);
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"1Gi\"\n\n\
         [agents.claude]\nimage = \"{image}\"\n\n\
         [agents.claude.credentials]\nupstream = \"{base}\"\n"
    ));
    let name = env.unique("hostlogin");
    let proj = env.project(&name);
    let secret = format!("HOSTSECRET{}", std::process::id());
    let host = host_claude_home(&proj, &secret);
    let out = env
        .cmd()
        .env("HOME", host.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["login", "claude", "--from-host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));

    let t = Term::start(&env, &proj);
    t.line("claude");
    // (Or a first-run screen, or the shell back: the asserts below say.)
    let s = t.wait("Claude Code's prompt", SLOW, |s| {
        let prompt = s.contains("Claude Code v") && s.lines().any(|l| l.starts_with('❯'));
        prompt
            || s.contains("trust this folder")
            || s.contains("Unable to connect")
            || shell_back_after(s, "claude")
    });
    let all = t.history();
    for first_run in [
        "Choose the text style",
        "Welcome to Claude Code",
        "Unable to connect",
        "trust this folder",
        "Select login method",
    ] {
        assert!(!all.contains(first_run), "{first_run}:\n{all}");
    }
    assert!(s.contains(proj.to_str().unwrap()), "{s}");
    // The prompt works: a message gets the model's answer.
    t.type_text("say pong");
    t.keys(&["Enter"]);
    t.wait("the model's reply", SLOW, |s| {
        s.contains("pong from the fake API")
    });

    // In the box: the answers, the theme, this project's trust; none of
    // the host's secrets, history or other projects.
    let id = format!("{name}-claude");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let boxed = docker_ok(&["exec", &cid, "cat", "/home/agent/.claude/.claude.json"]);
    let v: serde_json::Value = serde_json::from_str(&boxed).unwrap();
    assert_eq!(v["hasCompletedOnboarding"], true, "{v:#}");
    assert_eq!(v["theme"], "light", "{v:#}");
    assert_eq!(
        v["projects"][proj.to_str().unwrap()]["hasTrustDialogAccepted"],
        true,
        "{v:#}"
    );
    assert!(v["projects"].get("/somewhere/else").is_none(), "{v:#}");
    let found = docker(&[
        "exec",
        &cid,
        "grep",
        "-rl",
        &secret,
        "/home/agent",
        "/tmp",
        proj.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&found.stdout).trim().is_empty(),
        "host data reached the box: {}",
        String::from_utf8_lossy(&found.stdout)
    );
    t.keys(&["C-c"]);
    t.keys(&["C-c"]);
    env.ok(&["rm", "-f", &id]);
}

/// The same for Gemini CLI: the folder trust and the theme a user chose on
/// this machine are not asked again in a box. (Its subscription login
/// cannot be checked offline, so the model is reached with a key, through
/// the broker, as a user with `GEMINI_API_KEY` set would: then the key
/// signs in, not the method the login chose.)
#[test]
fn a_login_from_this_machine_opens_gemini_at_its_prompt() {
    use crate::broker_support::host_address;
    use crate::fake_model::{FakeApi, Reply};
    require_docker!();
    let Some(image) = real_image("gemini") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "pong from the fake API".into(),
        ..Reply::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"1Gi\"\n\n\
         [agents.gemini]\nimage = \"{image}\"\n\n\
         [agents.gemini.credentials]\nupstream = \"http://{}:{}\"\n",
        host_address(),
        fake.port
    ));
    let name = env.unique("hostlogin");
    let proj = env.project(&name);
    let secret = format!("HOSTSECRET{}", std::process::id());
    let host = tempfile::tempdir().unwrap();
    let g = host.path().join(".gemini");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(
        g.join("oauth_creds.json"),
        serde_json::json!({"access_token": format!("ya29.{secret}"),
            "refresh_token": format!("1//{secret}"), "token_type": "Bearer",
            "expiry_date": 4_102_444_800_000u64})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        g.join("settings.json"),
        serde_json::json!({
            "security": {"auth": {"selectedType": "oauth-personal"}},
            "ui": {"theme": "GitHub"},
            "mcpServers": {"db": {"command": "db", "env": {"TOKEN": secret}}},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        g.join("trustedFolders.json"),
        serde_json::json!({proj.to_str().unwrap(): "TRUST_FOLDER",
            format!("/elsewhere/{secret}"): "TRUST_FOLDER"})
        .to_string(),
    )
    .unwrap();
    let out = env
        .cmd()
        .env("HOME", host.path())
        .args(["login", "gemini", "--from-host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));

    let t = Term::start(&env, &proj);
    t.line(&format!(
        "GEMINI_API_KEY=AIza-REAL-{} gemini",
        std::process::id()
    ));
    let s = t.wait("Gemini CLI's prompt", SLOW, |s| {
        s.contains("Type your message")
            || s.contains("Do you trust")
            || s.contains("authenticate")
            || shell_back_after(s, " gemini")
    });
    assert!(s.contains("Type your message"), "{s}");
    t.type_text("say pong");
    t.wait("the typed line", Duration::from_secs(30), |s| {
        s.contains("> say pong")
    });
    // Keys that come fast after typing are taken as a paste, Enter too.
    std::thread::sleep(Duration::from_millis(700));
    t.keys(&["Enter"]);
    t.wait("the model's reply", SLOW, |s| {
        s.contains("pong from the fake API")
    });
    let all = t.history();
    assert!(!all.contains("Do you trust"), "{all}");

    let id = format!("{name}-gemini");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settings = docker_ok(&["exec", &cid, "cat", "/home/agent/.gemini/settings.json"]);
    let v: serde_json::Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(v["ui"]["theme"], "GitHub", "{v:#}");
    // The key signs in: the login's sign-in method would win over it.
    assert_eq!(
        v["security"]["auth"]["selectedType"],
        serde_json::Value::Null,
        "{v:#}"
    );
    let found = docker(&["exec", &cid, "grep", "-rl", &secret, "/home/agent/.gemini"]);
    let found = String::from_utf8_lossy(&found.stdout);
    // Its login is mounted as it is; nothing else of the host's.
    assert_eq!(
        found.trim(),
        "/home/agent/.gemini/oauth_creds.json",
        "host data reached the box"
    );
    t.keys(&["C-c"]);
    t.keys(&["C-c"]);
    env.ok(&["rm", "-f", &id]);
}
