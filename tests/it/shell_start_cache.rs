//! Shell start and exit through the line install.sh writes, in real zsh and
//! bash inside tmux: the cached copy of `init` is sourced without running
//! ai-sessctl, a shell that started nothing exits without running it
//! either, one that ran an agent does run `shell-exit`, a stale copy is
//! regenerated, and a copy (or state dir) another uid owns is never sourced.
//!
//! ai-sessctl is installed as a wrapper that logs each invocation and then
//! runs the real binary: the log is what the rc line ran. The functions
//! `init` defines call the real binary; `shell-exit` says in the event log
//! that it ran.

use crate::common::{Env, BIN};
use crate::tmux_support::{shq, tools_or_skip, Shell, Tmux};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A fresh home with install.sh's block in its rc files, and a state dir
/// whose `claude` is a host agent that exits at once (`true`).
struct Setup {
    env: Env,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::Builder::new().prefix("ais-sc").tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("proj")).unwrap();
        // bash's login file sources ~/.bashrc: install.sh leaves it alone.
        std::fs::write(home.join(".profile"), ". ~/.bashrc\n").unwrap();
        let wrapper = dir.path().join("ai-sessctl");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >>{}\nexec {} \"$@\"\n",
                shq(dir.path().join("calls.log").to_str().unwrap()),
                shq(BIN)
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let s = Setup {
            env: Env::new(),
            dir,
        };
        s.env.write_config(
            "[global]\nruntime = \"host\"\n\n[agents.claude]\ncommand = [\"true\"]\n",
        );
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
            .arg("--prefix")
            .arg(s.dir.path().join("prefix"))
            .arg("--binary")
            .arg(&wrapper)
            .env("HOME", s.home())
            .env("PATH", SYSTEM_PATH)
            .env_remove("AI_SESSIONS_HOME")
            .env_remove("PREFIX")
            .output()
            .unwrap();
        assert!(out.status.success(), "install.sh: {}", text(&out));
        s
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn installed(&self) -> PathBuf {
        self.dir.path().join("prefix/bin/ai-sessctl")
    }

    fn cache(&self, sh: Shell) -> PathBuf {
        self.env.state().join(format!("init.{}", sh.name()))
    }

    /// What the shells ran of ai-sessctl since the last call (then cleared).
    fn calls(&self) -> Vec<String> {
        let log = self.dir.path().join("calls.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_owned).collect()
    }

    fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.home().to_str().unwrap().into()),
            ("PATH".into(), SYSTEM_PATH.into()),
            ("TERM".into(), "screen".into()),
            ("LANG".into(), "C.UTF-8".into()),
            (
                "AI_SESSIONS_HOME".into(),
                self.env.state().to_str().unwrap().into(),
            ),
        ]
    }

    /// `sh -i -c script`, as a terminal starts a shell (rc files read).
    fn run(&self, sh: Shell, script: &str) -> Output {
        let mut c = Command::new(sh.name());
        c.args(["-i", "-c", script]).env_clear();
        for (k, v) in self.envs() {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null()).output().unwrap()
    }

    /// An interactive shell in tmux whose rc file loaded the integration.
    fn shell(&self, sh: Shell) -> Tmux {
        let t = Tmux::start(&self.home(), &self.envs(), &sh.interactive(false));
        assert_eq!(
            t.eval("${_AI_SESSIONS_BIN:+loaded}"),
            "loaded",
            "{sh:?}: {}",
            t.capture()
        );
        t
    }

    /// A first shell writes the cache (through `init`); the next loads it.
    fn warm(&self, sh: Shell) {
        let out = self.run(sh, "true");
        assert!(self.cache(sh).is_file(), "{sh:?}: no cache: {}", text(&out));
        self.calls();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn skip(test: &str) -> bool {
    !tools_or_skip(test, &["zsh", "tmux"])
}

/// The pids of the shells `shell-exit` ran for, from the event log (the
/// agent functions call the binary itself, not the logging wrapper).
fn shell_exits(s: &Setup) -> Vec<String> {
    let log = s.env.state().join("logs/session-manager.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["message"] == "owner shell exited")
        .map(|e| e["metadata"]["pid"].to_string())
        .collect()
}

fn started_nothing_runs_nothing(sh: Shell) {
    let s = Setup::new();
    // The very first shell has no cache: it asks `init`, which writes one.
    let out = s.run(sh, "true");
    let calls = s.calls();
    assert_eq!(calls, vec![format!("init {}", sh.name())], "{}", text(&out));
    let m = std::fs::metadata(s.cache(sh)).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "{sh:?}: the cache is private");

    // Later shells source it: no ai-sessctl at start, prompts or exit.
    let t = s.shell(sh);
    assert_eq!(
        t.eval("${_AI_SESSIONS_CACHED-}"),
        "1",
        "{sh:?}: from the cache"
    );
    assert!(t.eval("$(type claude | head -n 1)").contains("function"));
    t.line("echo one; echo two");
    t.wait_text("two");
    t.line("exit");
    t.wait_gone();
    assert_eq!(s.calls(), Vec::<String>::new(), "{sh:?}: ran ai-sessctl");
    assert_eq!(
        shell_exits(&s),
        Vec::<String>::new(),
        "{sh:?}: ran shell-exit"
    );

    // A shell that ran an agent owns what it started: its exit runs
    // `shell-exit` (and that clears the shell's marker).
    let t = s.shell(sh);
    let pid = t.eval("$$");
    t.line("cd proj && claude; echo agent-$((40 + 2))");
    t.wait_text("agent-42");
    assert!(
        s.env.state().join("shells").join(&pid).exists(),
        "{sh:?}: run leaves the marker of shell {pid}"
    );
    t.line("exit");
    t.wait_gone();
    let events = shell_exits(&s);
    assert_eq!(
        events,
        vec![pid.clone()],
        "{sh:?}: shell-exit ran once, for this shell"
    );
    assert!(
        !s.env.state().join("shells").join(&pid).exists(),
        "{sh:?}: shell-exit clears the marker"
    );
}

#[test]
fn zsh_that_started_nothing_runs_no_ai_sessctl_at_start_or_exit() {
    if skip("zsh_that_started_nothing_runs_no_ai_sessctl_at_start_or_exit") {
        return;
    }
    started_nothing_runs_nothing(Shell::Zsh);
}

#[test]
fn bash_that_started_nothing_runs_no_ai_sessctl_at_start_or_exit() {
    if skip("bash_that_started_nothing_runs_no_ai_sessctl_at_start_or_exit") {
        return;
    }
    started_nothing_runs_nothing(Shell::Bash);
}

/// Sets a file's modification time `secs` from now.
fn age(path: &Path, secs: i64) {
    let at = if secs >= 0 {
        std::time::SystemTime::now() + Duration::from_secs(secs as u64)
    } else {
        std::time::SystemTime::now() - Duration::from_secs((-secs) as u64)
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

fn stale_cache_is_regenerated(sh: Shell) {
    let s = Setup::new();
    s.warm(sh);
    let name = sh.name();
    let check = "printf '<%s|%s>' \"${_AI_SESSIONS_CACHED-none}\" \"$(type -t codex 2>/dev/null || whence -w codex 2>/dev/null)\"";
    let state = s.env.state();
    let (cfg, agents, cache, bin) = (
        state.join("config.toml"),
        state.join("agents.list"),
        s.cache(sh),
        s.installed(),
    );
    // Dates in the past, so that only the one file named is newer.
    let date = |newer: &Path| {
        for f in [&cfg, &agents, &bin] {
            age(f, if f.as_path() == newer { -5 } else { -30 });
        }
        age(&cache, -10);
    };

    // config.toml edited by another editor (a new agent): the next shell
    // asks `init` (which defines it and rewrites the cache), the one after
    // sources the new cache.
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str("\n[agents.codex]\ncommand = [\"true\"]\n");
    std::fs::write(&cfg, text_cfg).unwrap();
    date(&cfg);
    let out = s.run(sh, check);
    let o = text(&out);
    assert!(
        o.contains("<none|") && o.contains("function"),
        "{sh:?}: {o}"
    );
    assert_eq!(s.calls(), vec![format!("init {name}")], "{sh:?}");
    let out = s.run(sh, check);
    let o = text(&out);
    assert!(o.contains("<1|") && o.contains("function"), "{sh:?}: {o}");
    assert_eq!(s.calls(), Vec::<String>::new(), "{sh:?}");

    // A newer binary (an upgrade), or a newer agents.list (`config set`
    // in another shell): the same.
    for newer in [&bin, &agents] {
        date(newer);
        let out = s.run(sh, check);
        assert!(
            text(&out).contains("<none|"),
            "{sh:?} {newer:?}: {}",
            text(&out)
        );
        assert_eq!(s.calls(), vec![format!("init {name}")], "{sh:?}");
        let out = s.run(sh, check);
        assert!(
            text(&out).contains("<1|"),
            "{sh:?} {newer:?}: {}",
            text(&out)
        );
        assert_eq!(s.calls(), Vec::<String>::new(), "{sh:?}");
    }

    // A missing cache (deleted): `init` writes it again.
    std::fs::remove_file(&cache).unwrap();
    let out = s.run(sh, check);
    assert!(text(&out).contains("<none|"), "{sh:?}: {}", text(&out));
    assert_eq!(s.calls(), vec![format!("init {name}")], "{sh:?}");
    assert!(cache.is_file());
}

#[test]
fn zsh_stale_or_missing_cache_is_regenerated() {
    if skip("zsh_stale_or_missing_cache_is_regenerated") {
        return;
    }
    stale_cache_is_regenerated(Shell::Zsh);
}

#[test]
fn bash_stale_or_missing_cache_is_regenerated() {
    if skip("bash_stale_or_missing_cache_is_regenerated") {
        return;
    }
    stale_cache_is_regenerated(Shell::Bash);
}

fn chown(path: &Path, uid: u32) {
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
}

fn foreign_cache_is_refused(sh: Shell) {
    let s = Setup::new();
    s.warm(sh);
    let planted = "AIS_PLANTED=1\n";
    let check = "printf '<%s|%s>' \"${AIS_PLANTED-clean}\" \"${_AI_SESSIONS_BIN:+loaded}\"";

    // A cache another uid owns (fresh by every date): not sourced; `init`
    // runs and replaces it with one of ours.
    let cache = s.cache(sh);
    std::fs::write(&cache, planted).unwrap();
    chown(&cache, 65534);
    age(&cache, 60);
    let out = s.run(sh, check);
    assert!(
        text(&out).contains("<clean|loaded>"),
        "{sh:?}: {}",
        text(&out)
    );
    assert_eq!(s.calls(), vec![format!("init {}", sh.name())], "{sh:?}");
    let m = std::fs::metadata(&cache).unwrap();
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw(), "{sh:?}: replaced");
    assert!(!std::fs::read_to_string(&cache)
        .unwrap()
        .contains("AIS_PLANTED"));

    // Our own file in a state dir another uid owns: not sourced either
    // (whoever owns the dir can swap the file); ai-sessctl refuses the dir.
    std::fs::write(&cache, planted).unwrap();
    age(&cache, 60);
    chown(s.env.state(), 65534);
    let out = s.run(sh, check);
    chown(s.env.state(), nix::unistd::geteuid().as_raw());
    let o = text(&out);
    assert!(o.contains("<clean|"), "{sh:?}: {o}");
    assert!(o.contains("refusing"), "{sh:?}: says why: {o}");
}

fn root_or_skip(test: &str) -> bool {
    if !tools_or_skip(test, &["zsh"]) {
        return false;
    }
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED {test}: needs root to make a file another uid owns ***\n");
    false
}

#[test]
fn zsh_never_sources_a_cache_another_uid_could_write() {
    if !root_or_skip("zsh_never_sources_a_cache_another_uid_could_write") {
        return;
    }
    foreign_cache_is_refused(Shell::Zsh);
}

#[test]
fn bash_never_sources_a_cache_another_uid_could_write() {
    if !root_or_skip("bash_never_sources_a_cache_another_uid_could_write") {
        return;
    }
    foreign_cache_is_refused(Shell::Bash);
}

/// The cache follows `init`'s output: after `config set` adds an agent, the
/// cached text is what `init` prints now (and agents.list says the same).
#[test]
fn cache_holds_what_init_prints() {
    let s = Setup::new();
    s.env.ok(&[
        "config",
        "set",
        "--global",
        "agents.codex.command",
        "[\"true\"]",
    ]);
    for sh in [Shell::Zsh, Shell::Bash] {
        let printed = s.env.ok(&["init", sh.name()]);
        let cached = std::fs::read_to_string(s.cache(sh)).unwrap();
        let body = printed.trim_start_matches("# shellcheck shell=bash\n");
        assert!(
            cached.ends_with(body),
            "{sh:?}: the cache ends with the script"
        );
        assert!(cached.contains("codex"), "{sh:?}");
    }
}

fn set_mtime(path: &Path, at: std::time::SystemTime) {
    // The owner may date a file it cannot write (the .zwc is read-only).
    std::fs::File::open(path).unwrap().set_modified(at).unwrap();
}

/// zsh loads the compiled copy of the cache (`init.zsh.zwc`, which the
/// cache's header writes) in its place; a copy of an older text is never
/// run, even when zsh would take it (it only compares whole seconds), and
/// one zsh cannot use (another version) is compiled again.
#[test]
fn zsh_loads_the_compiled_cache_and_never_a_stale_one() {
    if skip("zsh_loads_the_compiled_cache_and_never_a_stale_one") {
        return;
    }
    let s = Setup::new();
    let sh = Shell::Zsh;
    s.warm(sh);
    let state = s.env.state();
    let (cfg, agents, cache, bin) = (
        state.join("config.toml"),
        state.join("agents.list"),
        s.cache(sh),
        s.installed(),
    );
    let zwc = state.join("init.zsh.zwc");
    let check = "printf '<%s|%s>' \"${_AI_SESSIONS_CACHED-none}\" \"$(whence -w codex)\"";

    // The second shell compiles the cache it sourced; no program ran.
    assert!(!zwc.exists(), "init wrote no compiled copy");
    let out = s.run(sh, check);
    assert!(text(&out).contains("<1|codex: none>"), "{}", text(&out));
    assert_eq!(s.calls(), Vec::<String>::new());
    assert!(zwc.is_file(), "the shell compiled the cache");

    // The compiled copy is what runs: a line added to the text (dated
    // before the copy) does not. Dates from a whole second after now and
    // the build (the cache must be newer than the binary `init` ran as).
    let built = std::fs::metadata(BIN).unwrap().modified().unwrap();
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    let later = std::time::SystemTime::now().max(built) + Duration::from_secs(10);
    let base = epoch + Duration::from_secs(later.duration_since(epoch).unwrap().as_secs());
    let date_inputs = || {
        for f in [&cfg, &agents, &bin] {
            set_mtime(f, base - Duration::from_secs(30));
        }
    };
    let original = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, format!("{original}\nprint -r -- TEXT-RAN\n")).unwrap();
    date_inputs();
    set_mtime(&cache, base - Duration::from_secs(5));
    set_mtime(&zwc, base);
    let out = s.run(sh, check);
    assert!(text(&out).contains("<1|codex: none>"), "{}", text(&out));
    assert!(!text(&out).contains("TEXT-RAN"), "{}", text(&out));
    std::fs::write(&cache, &original).unwrap();

    // A new agent: the next shell asks `init`, which rewrites the text and
    // removes the compiled copy.
    let stale = std::fs::read(&zwc).unwrap();
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str("\n[agents.codex]\ncommand = [\"true\"]\n");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = s.run(sh, check);
    assert!(
        text(&out).contains("<none|codex: function>"),
        "{}",
        text(&out)
    );
    assert_eq!(s.calls(), vec!["init zsh".to_owned()]);
    assert!(!zwc.exists(), "init removed the compiled copy");

    // The copy of the older text comes back within the second of the new
    // text (a shell that compiled it as `init` rewrote the text): zsh
    // would load it, but its stamp is not the text's, so `init` is asked.
    std::fs::write(&zwc, &stale).unwrap();
    date_inputs();
    set_mtime(&zwc, base + Duration::from_millis(100));
    set_mtime(&cache, base + Duration::from_millis(600));
    let out = s.run(sh, check);
    assert!(
        text(&out).contains("<none|codex: function>"),
        "{}",
        text(&out)
    );
    assert_eq!(s.calls(), vec!["init zsh".to_owned()]);
    // Then the next shell compiles the new text, and the one after runs it.
    for _ in 0..2 {
        let out = s.run(sh, check);
        assert!(text(&out).contains("<1|codex: function>"), "{}", text(&out));
        assert_eq!(s.calls(), Vec::<String>::new());
    }

    // A copy zsh cannot load (another zsh version wrote it; here: junk) is
    // replaced by one it can.
    std::fs::remove_file(&zwc).unwrap();
    std::fs::write(&zwc, "not a zwc file").unwrap();
    let out = s.run(sh, check);
    assert!(text(&out).contains("<1|codex: function>"), "{}", text(&out));
    assert_eq!(s.calls(), Vec::<String>::new());
    let out = Command::new("zsh")
        .args(["-fc", "zcompile -t \"$1\" init.zsh", "_"])
        .arg(&zwc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let leftovers: Vec<_> = std::fs::read_dir(state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("init.zsh.") && n != "init.zsh.zwc")
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "no temporary copy left");

    // `init` of the same text (an `eval "$(ai-sessctl init zsh)"` line
    // elsewhere) keeps the copy, and the next shell loads it as it is.
    s.env.ok(&["init", "zsh"]);
    assert!(zwc.is_file(), "init kept the current compiled copy");
    let dated = std::fs::metadata(&zwc).unwrap().modified().unwrap();
    let out = s.run(sh, check);
    assert!(text(&out).contains("<1|codex: function>"), "{}", text(&out));
    assert_eq!(s.calls(), Vec::<String>::new());
    assert_eq!(
        std::fs::metadata(&zwc).unwrap().modified().unwrap(),
        dated,
        "not compiled again"
    );
}

/// A terminal's zsh that loaded the compiled cache: the first TAB
/// completes, the prompt hook runs (segment shown), sourcing the cache
/// again under `set -u` neither fails nor adds a hook twice.
#[test]
fn zsh_from_the_compiled_cache_completes_prompts_and_resources() {
    if skip("zsh_from_the_compiled_cache_completes_prompts_and_resources") {
        return;
    }
    let s = Setup::new();
    let sh = Shell::Zsh;
    s.warm(sh);
    s.run(sh, "true");
    assert!(s.env.state().join("init.zsh.zwc").is_file());
    let proj = s.home().join("proj");
    std::fs::write(
        s.env.state().join("prompt.tsv"),
        format!("{}\tproj-claude\tclaude\trunning\t0\n", proj.display()),
    )
    .unwrap();
    let t = s.shell(sh);
    t.line("cd proj");
    t.wait_text("ai:1 claude");
    t.type_text("ai-list --");
    t.keys(&["Tab"]);
    t.wait_text("--quiet");
    t.keys(&["C-u"]);
    t.line(&format!(
        "setopt nounset; . \"$AI_SESSIONS_HOME/init.zsh\" {}; echo sourced-$?",
        shq(s.installed().to_str().unwrap())
    ));
    t.wait_text("sourced-0");
    assert_eq!(
        t.eval("$(print -l $precmd_functions $zshexit_functions | grep -c _ai_sessions)"),
        "2"
    );
    t.line("exit");
    t.wait_gone();
    assert_eq!(s.calls(), Vec::<String>::new());
}

/// bash chains its EXIT trap at the first prompt; a shell that draws none
/// (`bash -i -c`) but runs an agent still runs `shell-exit` when it exits.
#[test]
fn bash_without_a_prompt_that_ran_an_agent_runs_shell_exit() {
    if skip("bash_without_a_prompt_that_ran_an_agent_runs_shell_exit") {
        return;
    }
    let s = Setup::new();
    s.warm(Shell::Bash);
    let out = s.run(Shell::Bash, "echo \"pid=$$\"; cd ~/proj && claude");
    let o = text(&out);
    let pid = o
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap_or_else(|| panic!("{o}"))
        .to_owned();
    assert_eq!(shell_exits(&s), vec![pid], "{o}");
}

/// bash chains its EXIT trap only in a shell that owns instances: an agent
/// run in a subshell first leaves the user's trap alone there (it would
/// run the user's text when the subshell exits), and the shell itself
/// chains it at the next prompt: its exit runs `shell-exit`, then the
/// user's trap, once.
#[test]
fn bash_agent_in_a_subshell_first_chains_the_exit_trap_in_the_shell() {
    if skip("bash_agent_in_a_subshell_first_chains_the_exit_trap_in_the_shell") {
        return;
    }
    let s = Setup::new();
    s.warm(Shell::Bash);
    let t = s.shell(Shell::Bash);
    let pid = t.eval("$$");
    t.line("trap 'echo user-exit >>~/exit.log' EXIT");
    t.line("(cd ~/proj && claude); echo sub-$((40 + 2))");
    t.wait_text("sub-42");
    let log = s.home().join("exit.log");
    assert!(
        !log.exists(),
        "the user's EXIT trap ran when the subshell exited"
    );
    assert!(s.env.state().join("shells").join(&pid).exists());
    t.line("exit");
    t.wait_gone();
    assert_eq!(shell_exits(&s), vec![pid]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "user-exit\n",
        "the user's EXIT trap ran once, at the shell's exit"
    );
}
