//! The first hour in a fresh home, through install.sh and real shells:
//! PATH, doctor, zsh completion without the user's compinit, bash login
//! shells, a new agent at the next prompt, uninstall of created files, and
//! the whole walkthrough (install, first `claude` without and with an
//! image, a second project of the same name, typos, config edits,
//! completion) in zsh and bash inside tmux.

use crate::common;
use crate::tmux_support;

use crate::common::{Env, BIN};
use crate::tmux_support::{shq, tools_or_skip, Shell, Tmux};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// PATH of the new user's shells: the system's, without the install dir.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A fresh home (and install prefix, with a space in it) for one test; the
/// state lives in `env` (private port range, containers removed on drop).
struct Fresh {
    env: Env,
    dir: tempfile::TempDir,
}

impl Fresh {
    fn new() -> Fresh {
        let dir = tempfile::Builder::new().prefix("ais-fh").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Fresh {
            env: Env::new(),
            dir,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("pre fix")
    }

    fn bin(&self) -> PathBuf {
        self.prefix().join("bin/ai-sessctl")
    }

    fn write(&self, rc: &str, text: &str) {
        std::fs::write(self.home().join(rc), text).unwrap();
    }

    fn read(&self, rc: &str) -> Option<String> {
        std::fs::read_to_string(self.home().join(rc)).ok()
    }

    fn install(&self, extra: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("--prefix")
            .arg(self.prefix())
            .args(["--binary", BIN])
            .args(extra)
            .env("HOME", self.home())
            .env("PATH", SYSTEM_PATH)
            .env_remove("AI_SESSIONS_HOME")
            .env_remove("PREFIX")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn envs(&self) -> Vec<(String, String)> {
        let mut envs: Vec<(String, String)> = vec![
            ("HOME".into(), self.home().to_str().unwrap().into()),
            ("PATH".into(), SYSTEM_PATH.into()),
            ("TERM".into(), "screen".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("SHELL".into(), "/bin/bash".into()),
            (
                "AI_SESSIONS_HOME".into(),
                self.env.state().to_str().unwrap().into(),
            ),
        ];
        for k in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
            if let Ok(v) = std::env::var(k) {
                envs.push((k.into(), v));
            }
        }
        envs
    }

    /// `sh -i -c script` (`-l` too: a login shell) as a new terminal would
    /// start it.
    fn run(&self, sh: Shell, login: bool, script: &str) -> Output {
        let argv = sh.interactive(login);
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]).args(["-c", script]).env_clear();
        for (k, v) in self.envs() {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null()).output().unwrap()
    }

    /// An interactive shell in tmux, started in `cwd`.
    fn shell(&self, sh: Shell, cwd: &Path) -> Tmux {
        let t = Tmux::start(cwd, &self.envs(), &sh.interactive(false));
        // The rc files ran: the integration answers.
        assert_eq!(
            t.eval("${_AI_SESSIONS_BIN:+loaded}"),
            "loaded",
            "{sh:?}: {}",
            t.capture()
        );
        t
    }
}

fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn zsh_too() -> bool {
    tmux_support::have("zsh")
}

// ---------------------------------------------------------------- item 1

/// Item 1: the bin dir joins PATH in new shells (once, however often the
/// rc file is sourced), so `ai-sessctl` works as typed.
#[test]
fn install_puts_the_bin_dir_on_path_once() {
    let f = Fresh::new();
    f.write(".bashrc", "# mine\n");
    f.install(&[]);
    let dir = f.prefix().join("bin");
    let dir = dir.to_str().unwrap();
    // (shell, login shell, its rc file)
    let mut shells = vec![
        (Shell::Bash, false, ".bashrc"),
        (Shell::Bash, true, ".profile"),
    ];
    if zsh_too() {
        shells.push((Shell::Zsh, false, ".zshrc"));
    }
    for (sh, login, rc) in shells {
        let what = format!("{sh:?}{}", if login { " login" } else { "" });
        let out = f.run(
            sh,
            login,
            &format!(
                "ai-sessctl --version && . ~/{rc} && . ~/{rc} && printf 'PATH=%s\\n' \"$PATH\""
            ),
        );
        let text = out_text(&out);
        assert!(text.contains("ai-sessctl "), "{what}: {text}");
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("PATH="))
            .unwrap_or_else(|| panic!("{what}: {text}"));
        let n = path.split(':').filter(|p| *p == dir).count();
        assert_eq!(n, 1, "{what}: {dir} in PATH {n} times: {path}");
    }
}

// ---------------------------------------------------------------- item 2

/// Item 2: right after install, doctor finds the integration that a new
/// shell loads.
#[test]
fn doctor_finds_the_integration_a_new_shell_loads() {
    let f = Fresh::new();
    f.install(&[]);
    let out = Command::new(f.bin())
        .arg("doctor")
        .env_clear()
        .envs(f.envs())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok   bash: loaded"), "{text}");
    assert!(text.contains("ok   bash login shell: loaded"), "{text}");
    if zsh_too() {
        assert!(text.contains("ok   zsh: loaded"), "{text}");
    }
    assert!(!text.contains("FIX  shell"), "{text}");
    // Without the block a new shell has nothing: doctor says what to do.
    f.install(&["--uninstall"]);
    let out = Command::new(BIN)
        .arg("doctor")
        .env_clear()
        .envs(f.envs())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("init bash"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
}

// ---------------------------------------------------------------- item 3

/// Item 3: a fresh .zshrc runs no compinit; completion works anyway.
#[test]
fn zsh_completion_works_without_the_users_compinit() {
    if !tools_or_skip(
        "zsh_completion_works_without_the_users_compinit",
        &["tmux", "zsh"],
    ) {
        return;
    }
    let f = Fresh::new();
    f.write(".zshrc", "PS1='zsh> '\n");
    f.install(&[]);
    std::fs::write(
        f.env.state().join("prompt.tsv"),
        "/nonexistent/api\tapi-claude\tclaude\trunning\t9001\n",
    )
    .unwrap();
    let t = f.shell(Shell::Zsh, &f.home());
    t.type_text("ai-stop ");
    t.keys(&["Tab"]);
    t.wait("ai-stop <TAB>", |p| p.contains("ai-stop api-claude"));
    t.keys(&["C-u"]);
    t.type_text("ai-sessctl resta");
    t.keys(&["Tab"]);
    t.wait("ai-sessctl resta<TAB>", |p| {
        p.contains("ai-sessctl restart")
    });
}

// ---------------------------------------------------------------- item 4

/// Item 4: bash login shells (tmux, macOS Terminal) get the integration
/// too, the way each home is set up.
#[test]
fn bash_login_shells_get_the_integration() {
    // ~/.bash_profile that does not read ~/.bashrc: it gets the block.
    let f = Fresh::new();
    f.write(".bash_profile", "export MINE=1\n");
    f.install(&[]);
    let out = f.run(Shell::Bash, true, "type -t claude; echo \"mine=$MINE\"");
    let text = out_text(&out);
    assert!(text.contains("function\nmine=1"), "{text}");
    assert!(
        f.read(".profile").is_none(),
        "no ~/.profile made next to it"
    );
    f.install(&["--uninstall"]);
    assert_eq!(f.read(".bash_profile").unwrap(), "export MINE=1\n");

    // Debian's ~/.profile reads ~/.bashrc: left alone, and no
    // ~/.bash_profile that would stop it from being read.
    let f = Fresh::new();
    let profile = "if [ -n \"$BASH_VERSION\" ]; then\n    if [ -f \"$HOME/.bashrc\" ]; then\n\t. \"$HOME/.bashrc\"\n    fi\nfi\nexport FROM_PROFILE=1\n";
    f.write(".profile", profile);
    f.install(&[]);
    assert_eq!(f.read(".profile").unwrap(), profile);
    assert!(f.read(".bash_profile").is_none());
    let text = out_text(&f.run(
        Shell::Bash,
        true,
        "type -t claude; echo \"p=$FROM_PROFILE\"",
    ));
    assert!(text.contains("function\np=1"), "{text}");

    // Nothing at all: login shells still get it.
    let f = Fresh::new();
    f.install(&[]);
    let text = out_text(&f.run(Shell::Bash, true, "type -t claude"));
    assert!(text.contains("function"), "{text}");
}

// ---------------------------------------------------------------- item 5

/// Item 5: `config set` of a new agent: its function exists at the next
/// prompt of a running shell, without a reload.
fn new_agent_at_next_prompt(sh: Shell) {
    let f = Fresh::new();
    f.write(".zshrc", "PS1='zsh> '\n");
    f.install(&[]);
    let t = f.shell(sh, &f.home());
    let ask = match sh {
        Shell::Zsh => "$(whence -w codex)",
        _ => "$(type -t codex)",
    };
    assert!(!t.eval(ask).contains("function"), "no codex yet");
    t.line("ai-sessctl config set --global agents.codex.command '[\"true\"]'");
    t.wait_text("new agent codex");
    let got = t.eval(ask);
    assert!(got.contains("function"), "{sh:?}: {got:?}\n{}", t.capture());
    // And it goes away again when the agent is removed from the config.
    let cfg = f.env.state().join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("[agents.codex]", "[agents.codex_gone]")).unwrap();
    let _ = Command::new(BIN)
        .args(["init", "bash"])
        .env("AI_SESSIONS_HOME", f.env.state())
        .output();
    t.keys(&["Enter"]); // the next prompt
    let got = t.eval(ask);
    assert!(!got.contains("function"), "{sh:?}: {got:?}");

    // A hostile agents.list runs nothing and names nothing odd.
    let pwn = f.dir.path().join("pwned");
    let p = pwn.to_str().unwrap();
    std::fs::write(
        f.env.state().join("agents.list"),
        format!("claude $(touch {p}) `touch {p}` a;touch${{IFS}}{p} codex\n"),
    )
    .unwrap();
    t.keys(&["Enter"]);
    let got = t.eval(ask);
    assert!(got.contains("function"), "the valid name is taken: {got:?}");
    assert!(!pwn.exists(), "{sh:?} ran file text");
}

#[test]
fn zsh_new_agent_at_next_prompt() {
    if tools_or_skip("zsh_new_agent_at_next_prompt", &["tmux", "zsh"]) {
        new_agent_at_next_prompt(Shell::Zsh);
    }
}

#[test]
fn bash_new_agent_at_next_prompt() {
    if tools_or_skip("bash_new_agent_at_next_prompt", &["tmux"]) {
        new_agent_at_next_prompt(Shell::Bash);
    }
}

// ---------------------------------------------------------------- item 6

/// Item 6: uninstall removes the rc files install created (and only those).
#[test]
fn uninstall_removes_the_rc_files_install_created() {
    let f = Fresh::new();
    f.write(".zshrc", "# mine\n");
    f.install(&[]);
    assert!(f.read(".bashrc").is_some());
    f.install(&["--uninstall"]);
    for rc in [".bashrc", ".profile", ".bash_profile"] {
        assert!(f.read(rc).is_none(), "{rc} left behind");
    }
    assert_eq!(f.read(".zshrc").unwrap(), "# mine\n");
}

// ----------------------------------------------------------- walkthrough

/// Waits for the shell's prompt, so the next command is typed as a person
/// types it: keys typed before an attach has let go of the terminal go to
/// the agent.
fn at_prompt(t: &Tmux) {
    t.wait("the prompt after detaching", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("sh>"))
    });
}

/// The first hour, typed: install into a fresh home, `claude` before the
/// image exists (told to build it), with the image (banner, detach), a
/// second project of the same name (one name per project across agents,
/// the list tells them apart), typos (did you mean), a config edit on a
/// running instance (when it applies), and completion of ids and keys.
fn walkthrough(sh: Shell) {
    let f = Fresh::new();
    f.write(".zshrc", "PS1='zsh> '\n");
    f.write(".bashrc", "PS1='bash> '\n");
    f.install(&[]);
    let name = f.env.unique("api");
    let first = f.env.project(&format!("src/{name}"));
    let second = f.env.project(&format!("work/{name}"));
    std::fs::create_dir_all(first.join(".git")).unwrap();
    std::fs::create_dir_all(first.join("lib")).unwrap();
    let t = f.shell(sh, &first.join("lib"));

    // No image yet, and no claude on the host: the way forward is named.
    let never = format!("ais-never-built-{}:latest", f.env.token);
    t.line(&format!(
        "ai-sessctl config set --global agents.claude.image {never}"
    ));
    let host_claude = Command::new("sh")
        .args(["-c", "command -v claude"])
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap()
        .status
        .success();
    if host_claude {
        eprintln!("note: a claude is installed on this host; the no-image step is skipped");
    } else {
        t.line("claude");
        t.wait_text("ai-sessctl image build claude");
    }

    // With the image: the agent starts for the git project, detach keeps it.
    t.line(&format!(
        "ai-sessctl config set --global agents.claude.image {}",
        common::test_image_tag()
    ));
    t.line(&format!(
        "ai-sessctl config set --global agents.gemini.image {}",
        common::test_image_tag()
    ));
    t.line("claude");
    t.wait_count("fake-agent ready mode=claude", 1);
    t.keys(&["C-p", "C-q"]);
    t.wait_count("detached from", 1);
    let id1 = format!("{name}-claude");
    assert_eq!(f.env.instance(&id1)["status"], "running");
    assert_eq!(
        f.env.instance(&id1)["project_path"],
        first.to_str().unwrap()
    );

    // A second project of the same name: gemini first, then claude; one
    // name across both agents.
    t.line(&format!("cd {}", shq(second.to_str().unwrap())));
    t.line("gemini");
    t.wait_count("fake-agent ready mode=gemini", 1);
    t.keys(&["C-p", "C-q"]);
    t.wait_count("detached from", 2);
    at_prompt(&t);
    t.line("claude");
    t.wait_count("fake-agent ready mode=claude", 2);
    t.keys(&["C-p", "C-q"]);
    t.wait_count("detached from", 3);
    at_prompt(&t);
    let id2 = format!("{name}-2-claude");
    let gem2 = format!("{name}-2-gemini");
    for id in [&id2, &gem2] {
        assert_eq!(
            f.env.instance(id)["project_path"],
            second.to_str().unwrap(),
            "{id}: {:#}",
            f.env.registry()
        );
    }
    t.line("ai-list");
    t.wait(&format!("ai-list rows of {id1} and {id2}"), |p| {
        p.lines().any(|l| l.starts_with(&id1) && l.contains("src/"))
            && p.lines()
                .any(|l| l.starts_with(&id2) && l.contains("work/"))
    });

    // Typos.
    let typo = id1.replace("claude", "cluade");
    t.line(&format!("ai-stop {typo}"));
    t.wait_text(&format!("did you mean {id1}?"));
    t.line("ai-sessctl run cladue");
    t.wait_text("did you mean claude?");

    // A config edit on a running instance says when it applies.
    t.line(&format!(
        "ai-sessctl config set {id2} resources.memory.limit 256Mi"
    ));
    t.wait_text(&format!("ai-sessctl restart {id2}"));

    // Completion: a live id, then a config key.
    t.keys(&["C-u"]);
    t.type_text(&format!("ai-stop {}", &gem2[..gem2.len() - 3]));
    t.keys(&["Tab"]);
    t.wait("ai-stop <TAB>", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains(&format!("ai-stop {gem2}")))
    });
    t.keys(&["C-u"]);
    t.type_text("ai-sessctl config get --global resources.memory.l");
    t.keys(&["Tab"]);
    t.wait("config key <TAB>", |p| {
        p.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("resources.memory.limit"))
    });
    t.keys(&["C-u"]);

    let pane = t.capture();
    for bad in ["command not found", "unbound variable", "parameter not set"] {
        assert!(!pane.contains(bad), "{bad:?} on screen:\n{pane}");
    }
    let out = f.env.run(&["stop", "--all", "--force"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn zsh_first_hour_walkthrough() {
    require_docker!();
    if tools_or_skip("zsh_first_hour_walkthrough", &["tmux", "zsh"]) {
        walkthrough(Shell::Zsh);
    }
}

#[test]
fn bash_first_hour_walkthrough() {
    require_docker!();
    if tools_or_skip("bash_first_hour_walkthrough", &["tmux"]) {
        walkthrough(Shell::Bash);
    }
}

// ------------------------------------------------- agent worktree names

/// `claude -w <TAB>` / `gemini --worktree <TAB>` in the agent functions
/// offer the worktrees made for the repository the shell is in, as
/// `ai-sessctl run -w <TAB>` does.
fn agent_worktree_completion(sh: Shell) {
    let f = Fresh::new();
    f.write(".zshrc", "PS1='zsh> '\n");
    f.write(".bashrc", "PS1='bash> '\n");
    f.install(&[]);
    let repo = f.env.project("wtc");
    common::repo_with_worktrees(&repo, &["feat", "fix"]);
    let t = f.shell(sh, &repo);
    let last_is = |what: &str, want: &str| {
        t.wait(what, |p| {
            p.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_end().ends_with(want))
        });
    };
    t.type_text("claude -w fe");
    t.keys(&["Tab"]);
    last_is("claude -w fe<TAB>", "claude -w feat");
    t.keys(&["C-u"]);
    // Two names: listed (zsh at the first TAB, bash at the second).
    t.type_text("gemini --worktree f");
    t.keys(&["Tab", "Tab"]);
    t.wait("both names listed", |p| {
        p.lines().any(|l| l.contains("feat") && l.contains("fix"))
    });
    t.keys(&["C-u"]);
    t.type_text("claude --worktree=fi");
    t.keys(&["Tab"]);
    last_is("claude --worktree=fi<TAB>", "claude --worktree=fix");
    t.keys(&["C-u"]);
    // After other options of `run` too.
    t.type_text("claude --egress none -w fe");
    t.keys(&["Tab"]);
    last_is(
        "claude --egress none -w fe<TAB>",
        "claude --egress none -w feat",
    );
    t.keys(&["C-u"]);
    // Not a worktree position: files, as before.
    std::fs::write(repo.join("notes-unique.txt"), "x").unwrap();
    t.type_text("claude notes-u");
    t.keys(&["Tab"]);
    last_is("claude notes-u<TAB>", "claude notes-unique.txt");
    t.keys(&["C-u"]);
    let pane = t.capture();
    for bad in ["command not found", "unbound variable", "parameter not set"] {
        assert!(!pane.contains(bad), "{bad:?} on screen:\n{pane}");
    }
}

#[test]
fn zsh_agent_functions_complete_worktree_names() {
    if tools_or_skip(
        "zsh_agent_functions_complete_worktree_names",
        &["tmux", "zsh", "git"],
    ) {
        agent_worktree_completion(Shell::Zsh);
    }
}

#[test]
fn bash_agent_functions_complete_worktree_names() {
    if tools_or_skip(
        "bash_agent_functions_complete_worktree_names",
        &["tmux", "git"],
    ) {
        agent_worktree_completion(Shell::Bash);
    }
}
