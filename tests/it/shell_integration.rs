//! The shell layer end to end: real interactive zsh and bash, each from a
//! clean rc (nounset, a pre-existing precmd hook / PROMPT_COMMAND and EXIT
//! trap, `eval "$(ai-sessctl init …)"`), driven in a private tmux server,
//! with the real binary and the fake-agent container image. Plus the
//! stand-in based checks of `tests/shell/check.sh`.

use crate::common;

use crate::common::{wait_until, Env, BIN};
use crate::tmux_support::{shq, tools_or_skip, Shell, Tmux};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a container start and attach takes ~1-2 s on a loaded box.
const POLL: Duration = Duration::from_secs(15);

/// A test per shell of `body(Shell)`, named `zsh_…` and `bash_…`: it needs
/// the engine, and is skipped (loudly) without tmux or that shell.
macro_rules! per_shell {
    ($body:ident: $zsh:ident, $bash:ident) => {
        #[test]
        fn $zsh() {
            require_docker!();
            if shells_or_skip(stringify!($zsh), Some(Shell::Zsh)) {
                $body(Shell::Zsh);
            }
        }

        #[test]
        fn $bash() {
            require_docker!();
            if shells_or_skip(stringify!($bash), Some(Shell::Bash)) {
                $body(Shell::Bash);
            }
        }
    };
}

/// Skips loudly without tmux and the shell (both shells: `None`); fails
/// when CI says they must be here.
fn shells_or_skip(test: &str, sh: Option<Shell>) -> bool {
    let tools: &[&str] = match sh {
        Some(sh) => &["tmux", sh.name()],
        None => &["tmux", "zsh", "bash"],
    };
    tools_or_skip(test, tools)
}

// ---------------------------------------------------------------- shell

/// An interactive shell with the plugin loaded from a clean rc; its files
/// (pid, user hook log, user exit-trap marker) live in `dir`.
struct PluginShell {
    sh: Shell,
    // Field order = drop order: the server (and shell) go before the dir.
    tmux: Tmux,
    dir: tempfile::TempDir,
}

impl PluginShell {
    fn start(env: &Env, sh: Shell) -> PluginShell {
        let dir = tempfile::Builder::new().prefix("ais-sh").tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let bin_dir = Path::new(BIN)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let mut envs: Vec<(String, String)> = vec![
            ("HOME".into(), home.to_str().unwrap().into()),
            (
                "PATH".into(),
                format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin"),
            ),
            ("TERM".into(), "screen".into()),
            ("LANG".into(), "C.UTF-8".into()),
            (
                "AI_SESSIONS_HOME".into(),
                env.state().to_str().unwrap().into(),
            ),
        ];
        for k in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
            if let Ok(v) = std::env::var(k) {
                envs.push((k.into(), v));
            }
        }
        let argv: Vec<String> = match sh {
            Shell::Zsh => {
                let rc = format!(
                    "setopt nounset\n\
                     PS1='zsh> '\n\
                     T={d}\n\
                     print -r -- $$ >$T/shell.pid\n\
                     _user_precmd() {{ print -r -- hook >>$T/precmd.log }}\n\
                     precmd_functions+=(_user_precmd)\n\
                     trap 'print -r -- bye >$T/exit-trap' EXIT\n\
                     autoload -Uz compinit && compinit\n\
                     eval \"$({bin} init zsh)\"\n",
                    d = shq(&d),
                    bin = shq(BIN),
                );
                std::fs::write(dir.path().join(".zshrc"), rc).unwrap();
                envs.push(("ZDOTDIR".into(), d.clone()));
                vec!["zsh".into(), "-i".into()]
            }
            Shell::Bash => {
                let rc = format!(
                    "set -u\n\
                     PS1='bash> '\n\
                     T={d}\n\
                     printf '%s\\n' \"$$\" >\"$T/shell.pid\"\n\
                     PROMPT_COMMAND='echo hook >>\"$T/precmd.log\"'\n\
                     trap 'echo bye >\"$T/exit-trap\"' EXIT\n\
                     eval \"$({bin} init bash)\"\n",
                    d = shq(&d),
                    bin = shq(BIN),
                );
                let rc_path = dir.path().join("bashrc");
                std::fs::write(&rc_path, rc).unwrap();
                vec![
                    "bash".into(),
                    "--noprofile".into(),
                    "--rcfile".into(),
                    rc_path.to_str().unwrap().into(),
                    "-i".into(),
                ]
            }
        };
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let tmux = Tmux::start(dir.path(), &envs, &argv).with_poll(POLL);
        let shell = PluginShell { sh, tmux, dir };
        // The rc ran (pid written) and the first prompt is drawn.
        assert!(
            wait_until(POLL, || shell.pid().is_some()),
            "{sh:?} did not start; pane:\n{}",
            shell.tmux.capture()
        );
        shell.wait_prompt();
        // nothing but the prompt: no error from the rc or the plugin
        // (nounset, compinit, init output)
        let pane = shell.tmux.capture();
        let shown: Vec<&str> = pane.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(shown.len(), 1, "{sh:?} printed at start:\n{pane}");
        shell
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("shell.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The last line is a prompt waiting for input: `zsh> ` (then maybe
    /// the RPROMPT segment) or `[segment ]bash> `.
    fn wait_prompt(&self) {
        let sh = self.sh;
        self.tmux.wait("a prompt", |p| {
            let last = p.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            match sh {
                Shell::Zsh => last.strip_prefix("zsh>").is_some_and(|rest| {
                    let rest = rest.trim();
                    rest.is_empty() || rest.starts_with("ai:")
                }),
                Shell::Bash => last.trim_end().ends_with("bash>"),
            }
        });
    }

    fn cd(&self, path: &Path) {
        self.tmux
            .line(&format!("cd -- {}", shq(path.to_str().unwrap())));
        // cd prints nothing; the segment check below waits for the prompt.
        let pwd = self.tmux.eval("$PWD");
        assert_eq!(pwd, path.to_str().unwrap(), "cd into the project failed");
    }

    /// `claude` in the current dir: the fake agent's banner shows (the
    /// `n`th on screen), it answers, and ctrl-p ctrl-q detaches.
    fn claude_start_detach(&self, n: usize) {
        self.tmux.line("claude");
        self.tmux.wait_count("fake-agent ready mode=claude", n);
        self.tmux.line(&format!("remember x{n}"));
        self.tmux.wait_count("remembered", n);
        self.tmux.keys(&["C-p", "C-q"]);
        self.tmux.wait_count("detached from", n);
        self.wait_prompt();
    }

    /// `exit` in a shell that owns a running agent: the first warns and
    /// the shell stays, the second exits.
    fn exit_past_warning(&self) {
        self.tmux.line("exit");
        self.tmux.wait_text("`exit` again");
        self.wait_prompt();
        self.tmux.line("exit");
        self.tmux.wait_gone();
    }

    fn prompt_segment(&self) -> String {
        self.tmux.eval("$AI_SESSIONS_PROMPT")
    }

    fn exit_trap_ran(&self) -> bool {
        self.dir.path().join("exit-trap").exists()
    }

    fn user_hook_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("precmd.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for PluginShell {
    /// Kills the server; waits (briefly) for the shell to finish its exit
    /// hooks, so they do not race the harness removing state and containers.
    fn drop(&mut self) {
        let _ = self
            .tmux
            .cmd()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.pid() {
            wait_until(Duration::from_secs(5), || {
                !ai_sessions::core::procinfo::alive(pid as u32, None)
            });
        }
    }
}

/// The only instance in the registry (tests start one per project).
fn only_instance(env: &Env) -> (String, serde_json::Value) {
    let reg = env.registry();
    let map = reg["instances"].as_object().cloned().unwrap_or_default();
    assert_eq!(map.len(), 1, "expected one instance: {reg:#}");
    map.into_iter().next().unwrap()
}

fn status_of(env: &Env, id: &str) -> String {
    env.instance(id)["status"].as_str().unwrap_or("").to_owned()
}

fn wait_status(env: &Env, id: &str, want: &str) {
    assert!(
        wait_until(POLL, || status_of(env, id) == want),
        "{id} is not {want} within {POLL:?}: {:#}",
        env.instance(id)
    );
}

fn project(env: &Env, name: &str) -> (PathBuf, String) {
    let name = env.unique(name);
    let path = env.project(&name);
    (path, name)
}

// ---------------------------------------------------------------- tests

/// claude → banner, input, detach → prompt segment → ai-list → ai-stop
/// <TAB> → stopped, segment gone; init sourced twice → hooks once; claude
/// again → `exit` stops it, the user's EXIT trap and precmd hook ran.
fn full_flow(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "proj");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    assert_eq!(s.prompt_segment(), "", "no instance yet");

    s.claude_start_detach(1);
    let (id, inst) = only_instance(&env);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(inst["project_path"], proj.to_str().unwrap());
    assert_eq!(
        inst["owner_pid"].as_i64(),
        s.pid().map(i64::from),
        "owned by the shell"
    );
    let seg = s.prompt_segment();
    assert!(
        seg.contains("ai:1 claude●"),
        "segment after detach: {seg:?}"
    );
    // the rendered prompt (zsh: RPROMPT at the right, bash: PS1 prefix)
    s.tmux.keys(&["Enter"]);
    s.tmux.wait("the segment in the prompt", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("ai:1 claude●"))
    });

    // ai-list: the table has a row starting with the id
    s.tmux.line("ai-list");
    s.tmux.wait("ai-list row", |p| {
        p.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains("running"))
    });
    s.wait_prompt();

    // ai-stop <TAB> completes the live id; Enter runs it
    s.tmux.type_text("ai-stop ");
    s.tmux.keys(&["Tab"]);
    s.tmux.wait("ai-stop <TAB> completion", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains(&format!("ai-stop {id}")))
    });
    s.tmux.keys(&["Enter"]);
    s.tmux.wait_text(&format!("stopped {id}"));
    s.wait_prompt();
    assert_eq!(status_of(&env, &id), "stopped");
    assert_eq!(s.prompt_segment(), "", "segment after ai-stop");
    s.tmux.keys(&["Enter"]);
    s.wait_prompt();
    assert!(
        !s.tmux.last_line().contains("ai:"),
        "prompt after ai-stop: {:?}",
        s.tmux.last_line()
    );

    // init sourced a second time (rc re-read): every hook still once
    s.tmux
        .line(&format!("eval \"$(ai-sessctl init {})\"", sh.name()));
    s.wait_prompt();
    match sh {
        Shell::Zsh => {
            let n = s.tmux.eval(
                "$(print -l $precmd_functions | grep -c _ai_sessions),$(print -l $zshexit_functions | grep -c _ai_sessions),$(print -l $precmd_functions | grep -c _user_precmd)",
            );
            assert_eq!(n, "1,1,1", "precmd ours, zshexit ours, precmd user's");
        }
        Shell::Bash => {
            let n = s.tmux.eval(
                "$(grep -o _ai_sessions_precmd <<<\"$PROMPT_COMMAND\" | wc -l),$(trap -p EXIT | grep -o _ai_sessions_exit_hook | wc -l),$(grep -o precmd.log <<<\"$PROMPT_COMMAND\" | wc -l),$(trap -p EXIT | grep -o exit-trap | wc -l)",
            );
            assert_eq!(
                n, "1,1,1,1",
                "PROMPT_COMMAND ours, EXIT trap ours, PROMPT_COMMAND user's, EXIT trap user's"
            );
        }
    }

    let pane = s.tmux.capture();
    for bad in [
        "parameter not set",
        "unbound variable",
        "command not found",
        "error",
    ] {
        assert!(!pane.contains(bad), "{bad:?} on screen:\n{pane}");
    }

    // a second instance, then `exit`: stopped by the exit hook
    s.claude_start_detach(2);
    assert_eq!(status_of(&env, &id), "running");
    let hook_lines = s.user_hook_lines();
    assert!(
        hook_lines >= 5,
        "the user's precmd hook ran ({hook_lines} lines)"
    );
    s.exit_past_warning();
    wait_status(&env, &id, "stopped");
    let inst = env.instance(&id);
    assert!(
        inst["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("owner shell")),
        "reason names the shell: {inst:#}"
    );
    assert!(s.exit_trap_ran(), "the user's EXIT trap ran");
    assert!(
        s.user_hook_lines() >= hook_lines,
        "user's precmd hook log kept"
    );
}

per_shell!(full_flow: zsh_full_flow, bash_full_flow);

/// `on_shell_exit = "keep"`: `exit` leaves the instance running, disowned
/// (a later reconcile does not reap it as an orphan).
fn exit_keep(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    env.ok(&["config", "set", "--global", "global.on_shell_exit", "keep"]);
    let (proj, _) = project(&env, "keep");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    s.tmux.line("exit");
    s.tmux.wait_gone();
    assert!(s.exit_trap_ran(), "the user's EXIT trap ran");
    // shell-exit ran before the shell went away; give a wrong stop time
    // to show up anyway.
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["list"]);
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "running", "kept: {inst:#}");
    assert!(inst["owner_pid"].is_null(), "disowned: {inst:#}");
    let state = common::inspect(&common::cname(&id))
        .and_then(|v| v["State"]["Status"].as_str().map(str::to_owned));
    assert_eq!(state.as_deref(), Some("running"), "the container runs on");
}

per_shell!(exit_keep: zsh_exit_keep_policy, bash_exit_keep_policy);

/// The shell is SIGKILLed (no exit hook): the next `ai-sessctl list` stops
/// the orphan, saying why.
fn killed_shell(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "kill");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, inst) = only_instance(&env);
    let pid = s.pid().unwrap();
    assert_eq!(inst["owner_pid"].as_i64(), Some(i64::from(pid)));
    // SAFETY: kill(2) on the shell this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    s.tmux.wait_gone();
    assert!(!s.exit_trap_ran(), "SIGKILL runs no trap");
    assert_eq!(status_of(&env, &id), "running", "nothing stopped it yet");
    env.ok(&["list"]);
    let inst = env.instance(&id);
    assert_eq!(
        inst["status"], "stopped",
        "orphan stopped by list: {inst:#}"
    );
    assert!(
        inst["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("owner shell")),
        "reason names the owner shell: {inst:#}"
    );
}

per_shell!(killed_shell: zsh_killed_shell_orphan_stopped, bash_killed_shell_orphan_stopped);

/// A project path with spaces and both kinds of quotes.
fn odd_path(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "it's a \"proj\" dir");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, inst) = only_instance(&env);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(inst["project_path"], proj.to_str().unwrap());
    let seg = s.prompt_segment();
    assert!(
        seg.contains("ai:1 claude●"),
        "segment in the odd dir: {seg:?}"
    );
    s.tmux.keys(&["Enter"]);
    s.tmux.wait("the segment in the prompt", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("ai:1 claude●"))
    });
    // attach again through the function: same instance, memory kept
    s.tmux.line("claude");
    s.tmux.wait_count("attached to", 2);
    s.tmux.line("recall");
    s.tmux.wait_text("recalled: x1");
    s.tmux.keys(&["C-p", "C-q"]);
    s.tmux.wait_count("detached from", 2);
    s.wait_prompt();
    assert_eq!(only_instance(&env).0, id);
}

per_shell!(odd_path: zsh_project_path_with_spaces_and_quotes, bash_project_path_with_spaces_and_quotes);

/// The stand-in based checks of the sourced layer (no engine needed).
#[test]
fn shell_check_script_passes() {
    if !shells_or_skip("shell_check_script_passes", None) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/shell/check.sh"))
        .current_dir(root)
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .output()
        .expect("bash tests/shell/check.sh");
    assert!(
        out.status.success(),
        "tests/shell/check.sh failed ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------- needs you

/// `docker exec` in the instance's container: `sh -c SCRIPT` as the agent
/// runs (its user, its environment).
fn in_container(env: &Env, id: &str, script: &str) {
    let cid = env.instance(id)["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    let out = Command::new("docker")
        .args(["exec", &cid, "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the activity watcher recorded `want` and considered it for
/// a notification.
fn wait_considered(env: &Env, id: &str, want: &str) {
    assert!(
        wait_until(POLL, || {
            let i = env.instance(id);
            i["activity"] == want
                && !i["activity_since"].is_null()
                && i["activity_notified"] == i["activity_since"]
        }),
        "{id} did not turn {want}: {:#}",
        env.instance(id)
    );
}

/// The agent says it waits: while a terminal is attached nothing is sent;
/// detached, the prompt shows `claude?`, `list --json` says waiting and
/// `alerts.command` runs once with the id, project and activity.
fn needs_you(sh: Shell) {
    let env = Env::new();
    let alerts = env.state().join("alerts.log");
    env.use_test_image(&format!(
        "[alerts]\ncommand = [\"sh\", \"-c\", \"echo \\\"$AI_INSTANCE_ID $AI_PROJECT_NAME $AI_ACTIVITY\\\" >>{}\"]\n",
        shq(alerts.to_str().unwrap())
    ));
    let alert_lines = || {
        std::fs::read_to_string(&alerts)
            .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (proj, name) = project(&env, "needs");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.tmux.line("claude");
    s.tmux.wait_count("fake-agent ready mode=claude", 1);
    let (id, _) = only_instance(&env);

    // Attached: the user sees the agent; no notification.
    in_container(&env, &id, "echo waiting >\"$AI_SESSION_STATUS_FILE\"");
    wait_considered(&env, &id, "waiting");
    assert!(alert_lines().is_empty(), "attached: {:?}", alert_lines());
    in_container(&env, &id, "echo working >\"$AI_SESSION_STATUS_FILE\"");
    wait_considered(&env, &id, "working");

    s.tmux.keys(&["C-p", "C-q"]);
    s.tmux.wait_count("detached from", 1);
    s.wait_prompt();
    assert!(
        s.prompt_segment().contains("ai:1 claude●"),
        "{:?}",
        s.prompt_segment()
    );

    // Detached: the status file (on the host) says waiting.
    let status = env.state().join("activity").join(&id).join("status");
    std::fs::write(&status, "waiting\n").unwrap();
    // A prompt is drawn when a command ends: press Enter until it shows
    // the mark (the watcher records the change within a fraction of a s).
    let last_has_mark = |p: &str| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("ai:1 ?1 claude?"))
    };
    assert!(
        wait_until(POLL, || {
            s.tmux.keys(&["Enter"]);
            std::thread::sleep(Duration::from_millis(200));
            last_has_mark(&s.tmux.capture())
        }),
        "the waiting mark in the prompt; pane:\n{}",
        s.tmux.capture()
    );
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["activity"], "waiting", "{listed:#}");
    wait_considered(&env, &id, "waiting");
    assert!(
        wait_until(POLL, || !alert_lines().is_empty()),
        "alerts.command did not run"
    );
    assert_eq!(
        alert_lines(),
        vec![format!("{id} {name} waiting")],
        "once, with id, project, activity"
    );
    // Written again (the same word): no second notification.
    std::fs::write(&status, "waiting\n").unwrap();
    env.ok(&["list"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(alert_lines().len(), 1, "{:?}", alert_lines());
}

per_shell!(needs_you: zsh_needs_you_mark_and_alert, bash_needs_you_mark_and_alert);

/// Presses Enter until the last prompt line shows `want` (a prompt is
/// drawn when a command ends; the watcher records a change within a
/// fraction of a second).
fn wait_prompt_line(s: &PluginShell, want: &str) {
    assert!(
        wait_until(POLL, || {
            s.tmux.keys(&["Enter"]);
            std::thread::sleep(Duration::from_millis(200));
            s.tmux
                .capture()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.contains(want))
        }),
        "{want:?} in the prompt; pane:\n{}",
        s.tmux.capture()
    );
}

/// From `~` or another project, the prompt counts the agents that wait
/// (`ai:1 ?1`), and stops once it works again.
fn needs_you_anywhere(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "far");
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (id, _) = only_instance(&env);
    let (elsewhere, _) = project(&env, "elsewhere");
    let s = PluginShell::start(&env, sh);
    wait_prompt_line(&s, "ai:1");
    assert!(
        !s.prompt_segment().contains('?'),
        "{:?}",
        s.prompt_segment()
    );

    let status = env.state().join("activity").join(&id).join("status");
    std::fs::write(&status, "waiting\n").unwrap();
    // In the home directory.
    wait_prompt_line(&s, "ai:1 ?1");
    assert!(
        !s.prompt_segment().contains("claude"),
        "no mark of an agent here: {:?}",
        s.prompt_segment()
    );
    // In another project.
    s.cd(&elsewhere);
    wait_prompt_line(&s, "ai:1 ?1");
    // `ai-sessctl prompt` (starship) says the same.
    let out = env
        .cmd()
        .current_dir(&elsewhere)
        .arg("prompt")
        .output()
        .unwrap();
    assert_eq!(common::stdout(&out).trim(), "ai:1 ?1");

    std::fs::write(&status, "working\n").unwrap();
    assert!(
        wait_until(POLL, || {
            s.tmux.keys(&["Enter"]);
            std::thread::sleep(Duration::from_millis(200));
            !s.prompt_segment().contains('?')
        }),
        "the count goes: {:?}",
        s.prompt_segment()
    );
}

per_shell!(needs_you_anywhere: zsh_needs_you_from_anywhere, bash_needs_you_from_anywhere);

/// Config for the exit tests: the fake agent ignoring SIGTERM (as Gemini
/// CLI does), so a stop waits the whole `stop_timeout` before the kill.
fn stubborn_agent_config(env: &Env) {
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"8s\"\n\n\
         [resources.memory]\nlimit = \"64Mi\"\n\n\
         [agents.claude]\nimage = \"{}\"\n\
         command = [\"sh\", \"-c\", \"trap '' TERM; exec fake-agent\"]\n",
        common::test_image_tag()
    ));
}

/// `exit` returns at once although the agent ignores SIGTERM: the stop is
/// handed to a detached process that finishes it (SIGKILL after the
/// timeout) and records it.
fn exit_returns_at_once(sh: Shell) {
    let env = Env::new();
    stubborn_agent_config(&env);
    let (proj, _) = project(&env, "stubborn");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    let t0 = Instant::now();
    s.exit_past_warning();
    let gone = t0.elapsed();
    // The shell is gone while the agent is still being stopped.
    let state = common::inspect(&common::cname(&id))
        .and_then(|v| v["State"]["Status"].as_str().map(str::to_owned));
    assert_eq!(
        state.as_deref(),
        Some("running"),
        "the shell waited for the stop ({gone:?})"
    );
    assert!(s.exit_trap_ran(), "the user's EXIT trap ran");
    // The detached helper completes the stop and records it.
    assert!(
        wait_until(Duration::from_secs(30), || status_of(&env, &id)
            == "stopped"),
        "not recorded: {:#}",
        env.instance(&id)
    );
    let inst = env.instance(&id);
    assert_eq!(inst["exit_code"], 137, "killed after the timeout: {inst:#}");
    assert!(
        inst["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("owner shell")),
        "{inst:#}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || common::inspect(&common::cname(
            &id
        ))
        .is_none()),
        "container removed"
    );
    eprintln!("{sh:?}: exit returned after {gone:?}; the stop went on in the background");
}

per_shell!(exit_returns_at_once: zsh_exit_returns_at_once, bash_exit_returns_at_once);

/// The owner shell exits while a second terminal is attached: the instance
/// is kept for that terminal (its shell becomes the owner, said in the
/// event log), the agent keeps answering it; that shell's exit stops it.
fn attached_terminal_keeps_its_agent(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "handover");
    let one = PluginShell::start(&env, sh);
    one.cd(&proj);
    one.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    let two = PluginShell::start(&env, sh);
    two.cd(&proj);
    two.tmux.line("claude");
    two.tmux.wait_text("attached to");
    std::thread::sleep(Duration::from_millis(300));
    two.tmux.line("before-handover");
    two.tmux.wait_text("echo: before-handover");

    one.tmux.line("exit");
    one.tmux.wait_gone();
    std::thread::sleep(Duration::from_secs(2));
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(
        inst["owner_pid"].as_i64(),
        two.pid().map(i64::from),
        "the attached terminal's shell owns it now: {inst:#}"
    );
    two.tmux.line("after-handover");
    two.tmux.wait_text("echo: after-handover");
    let events = env.ok(&["events", "--json"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("ownership passed") && l.contains(&id)),
        "{events}"
    );

    two.tmux.keys(&["C-p", "C-q"]);
    two.tmux.wait_text("detached from");
    two.wait_prompt();
    two.exit_past_warning();
    assert!(
        wait_until(Duration::from_secs(20), || status_of(&env, &id)
            == "stopped"),
        "the new owner's exit stops it: {:#}",
        env.instance(&id)
    );
}

per_shell!(attached_terminal_keeps_its_agent: zsh_attached_terminal_keeps_its_agent, bash_attached_terminal_keeps_its_agent);

// ------------------------------------------------ the functions' options

/// `claude` reads `ai-sessctl run`'s options among its leading words
/// (`--egress allowlist`, `--egress=none`, `--detach`, `--id ID`) and hands
/// the agent the rest untouched: from its first word that is not one of
/// them on (a later `--egress` too, `-h`), and everything after `--`.
/// `ai-sessctl run` typed in the same shell is owned by it as `claude` is:
/// `show` names the shell, and `exit` stops all three.
fn agent_function_options(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, name) = project(&env, "opts");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    let pid = s.pid().map(i64::from);

    s.tmux
        .line("claude --egress allowlist --model x -p 'hi there' --egress open -h");
    s.tmux.wait_text("fake-agent ready mode=claude");
    let pane = s.tmux.wait_text("args=");
    let banner = pane.lines().find(|l| l.contains("args=")).unwrap_or("");
    assert!(
        banner
            .trim_end()
            .ends_with(" --model x -p hi there --egress open -h")
            && !banner.contains("allowlist"),
        "the agent's words, and only those:\n{pane}"
    );
    s.tmux.keys(&["C-p", "C-q"]);
    s.tmux.wait_text("detached from");
    s.wait_prompt();
    let (one, inst) = only_instance(&env);
    assert_eq!(inst["egress"], "allowlist", "{inst:#}");
    assert_eq!(
        inst["args"],
        serde_json::json!(["--model", "x", "-p", "hi there", "--egress", "open", "-h"]),
        "{inst:#}"
    );
    assert_eq!(inst["owner_pid"].as_i64(), pid, "{inst:#}");

    let two = format!("{name}-two-claude");
    s.tmux.line(&format!(
        "claude --detach --id {two} --egress=none -- --egress open"
    ));
    s.tmux.wait_text(&format!("started {two}"));
    s.wait_prompt();
    let inst = env.instance(&two);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(inst["egress"], "none", "{inst:#}");
    assert_eq!(
        inst["args"],
        serde_json::json!(["--egress", "open"]),
        "after `--`, the agent's: {inst:#}"
    );
    assert_eq!(inst["owner_pid"].as_i64(), pid, "{inst:#}");

    // Not through the function: the same shell owns it.
    let three = format!("{name}-three-claude");
    s.tmux
        .line(&format!("ai-sessctl run claude --detach --id {three}"));
    s.tmux.wait_text(&format!("started {three}"));
    s.wait_prompt();
    let inst = env.instance(&three);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(
        inst["owner_pid"].as_i64(),
        pid,
        "owned by the shell: {inst:#}"
    );
    let shown = env.ok(&["show", &three]);
    assert!(
        shown.lines().any(|l| l.starts_with("owner shell:")
            && l.trim_end().ends_with(&format!(" {}", pid.unwrap()))),
        "{shown}"
    );

    s.exit_past_warning();
    for id in [&one, &two, &three] {
        wait_status(&env, id, "stopped");
        let inst = env.instance(id);
        assert!(
            inst["status_reason"]
                .as_str()
                .is_some_and(|r| r.contains("owner shell")),
            "stopped with its shell: {inst:#}"
        );
    }
}

per_shell!(agent_function_options: zsh_agent_function_takes_run_options, bash_agent_function_takes_run_options);

/// A script run from an integrated shell starts `ai-sessctl run`: the shell
/// it runs under owns the instance (its exit stops it). A process that
/// only inherited the variable (not under that shell) is owned by none.
fn run_owned_by_the_shell_it_runs_under(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, name) = project(&env, "runown");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    let pid = s.pid().unwrap();

    // Through a script (a child process of the shell, not the shell).
    let id = format!("{name}-script-claude");
    s.tmux
        .line(&format!("sh -c 'ai-sessctl run claude --detach --id {id}'"));
    s.tmux.wait_text(&format!("started {id}"));
    s.wait_prompt();
    assert_eq!(
        env.instance(&id)["owner_pid"].as_i64(),
        Some(i64::from(pid)),
        "{:#}",
        env.instance(&id)
    );

    // The variable with the shell's pid, but run from elsewhere: not owned.
    let stray = format!("{name}-stray-claude");
    env.cmd()
        .current_dir(&proj)
        .env("AI_SESSIONS_SHELL_PID", pid.to_string())
        .args(["run", "claude", "--detach", "--id", &stray])
        .output()
        .unwrap();
    let inst = env.instance(&stray);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert!(
        inst["owner_pid"].is_null(),
        "not under that shell: {inst:#}"
    );

    s.exit_past_warning();
    wait_status(&env, &id, "stopped");
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["list"]);
    assert_eq!(status_of(&env, &stray), "running");
}

per_shell!(run_owned_by_the_shell_it_runs_under: zsh_run_owned_by_the_shell_it_runs_under, bash_run_owned_by_the_shell_it_runs_under);

// ------------------------------------------------------------ honest exits

/// With the default `on_shell_exit = "stop"`: the detach message says the
/// agent stops with this shell and how to keep it; the first `exit` warns
/// (naming it) and the shell stays, the second exits and stops it.
fn exit_warns_once(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "warn");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    let pane = s.tmux.capture();
    let detached = pane
        .lines()
        .find(|l| l.contains("detached from"))
        .unwrap_or("");
    assert!(
        detached.contains("stops when this shell exits")
            && detached.contains(&format!("`ai-sessctl keep {id}`"))
            && !detached.contains("keeps running"),
        "detach message: {detached:?}"
    );

    s.tmux.line("exit");
    let pane = s.tmux.wait_text("`exit` again");
    assert!(
        pane.contains(&format!("this shell owns a running agent: {id}")),
        "the warning names the agent:\n{pane}"
    );
    s.wait_prompt();
    assert!(s.tmux.alive(), "the first exit leaves the shell");
    assert_eq!(status_of(&env, &id), "running");
    assert!(!s.exit_trap_ran(), "the shell did not exit");

    // Another command in between: the next `exit` warns again (as zsh
    // does for jobs); the one right after it goes ahead.
    s.tmux.line("echo between");
    s.wait_prompt();
    s.tmux.line("exit");
    s.tmux.wait_count("`exit` again", 2);
    s.wait_prompt();
    assert_eq!(status_of(&env, &id), "running");
    s.tmux.line("exit");
    s.tmux.wait_gone();
    assert!(s.exit_trap_ran(), "the user's EXIT trap ran");
    wait_status(&env, &id, "stopped");
}

per_shell!(exit_warns_once: zsh_exit_warns_once, bash_exit_warns_once);

/// `warn_on_exit = false`: `exit` goes at once (and the policy applies).
fn exit_warning_off(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    env.ok(&["config", "set", "--global", "global.warn_on_exit", "false"]);
    let (proj, _) = project(&env, "nowarn");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    s.tmux.line("exit");
    s.tmux.wait_gone();
    wait_status(&env, &id, "stopped");
}

per_shell!(exit_warning_off: zsh_exit_warning_off, bash_exit_warning_off);

/// `ai-sessctl keep ID`: the shell no longer owns it, so `exit` goes at
/// once and the agent keeps running.
fn keep_then_exit(sh: Shell) {
    let env = Env::new();
    env.use_test_image("");
    let (proj, _) = project(&env, "keepit");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    s.tmux.line(&format!("ai-sessctl keep {id}"));
    s.tmux
        .wait_text(&format!("{id} keeps running after its shell exits"));
    s.wait_prompt();
    assert!(env.instance(&id)["owner_pid"].is_null());
    s.tmux.line("exit");
    s.tmux.wait_gone();
    assert!(s.exit_trap_ran(), "the user's EXIT trap ran");
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["list"]);
    assert_eq!(status_of(&env, &id), "running", "{:#}", env.instance(&id));
    let state = common::inspect(&common::cname(&id))
        .and_then(|v| v["State"]["Status"].as_str().map(str::to_owned));
    assert_eq!(state.as_deref(), Some("running"), "the container runs on");
}

per_shell!(keep_then_exit: zsh_keep_then_exit, bash_keep_then_exit);

/// `ai-stop` of an agent that ignores SIGTERM says it waits (and how not
/// to), then the agent is killed at the timeout.
fn stop_says_it_waits(sh: Shell) {
    let env = Env::new();
    stubborn_agent_config(&env);
    let (proj, _) = project(&env, "waits");
    let s = PluginShell::start(&env, sh);
    s.cd(&proj);
    s.claude_start_detach(1);
    let (id, _) = only_instance(&env);
    s.tmux.line(&format!("ai-stop {id}"));
    let pane = s
        .tmux
        .wait_text(&format!("waiting up to 8s for {id} to stop"));
    assert!(
        pane.contains("`--force` kills it now"),
        "the way out is named:\n{pane}"
    );
    s.tmux.wait_text(&format!("stopped {id}"));
    s.wait_prompt();
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "stopped", "{inst:#}");
    assert_eq!(inst["exit_code"], 137, "killed after the timeout: {inst:#}");
}

per_shell!(stop_says_it_waits: zsh_stop_says_it_waits, bash_stop_says_it_waits);
