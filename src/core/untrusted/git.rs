//! Every host-side git call of ours, through one runner. The repositories
//! we run git in are the agent's to write (`.git/config`, `info/attributes`,
//! hooks, `.gitattributes`), and git runs programs they name: hooks,
//! `filter.<driver>.clean|smudge|process`, `diff.<driver>.textconv`,
//! `core.fsmonitor`, `core.pager`, and more. Rules, in layers:
//!
//! 1. A Linux Landlock ruleset (applied in the child before `exec`) lets git
//!    execute only git itself: its binary, its `--exec-path` and its ELF
//!    loader. Whatever a config or hook names, `sh` included, cannot be
//!    started (naming one of git's own programs runs it, confined the same
//!    way, with no arguments of the agent's), and the rule is race-free: the agent may rewrite `.git/config`
//!    between any check of ours and git's own read of it. The kernel's
//!    support is probed (and git run under it once); without it (an old
//!    kernel, macOS, a git that is a wrapper script) only the layers below
//!    apply.
//! 2. Config that git reads after the repository's: every documented command
//!    key set to nothing (`core.hooksPath=/dev/null` hides every hook), and
//!    each driver named in the repository's config (`filter.*`, `diff.*`,
//!    `merge.*`) emptied, given through `GIT_CONFIG_COUNT` so no name can be
//!    misparsed. This listing can race the agent; layer 1 cannot.
//! 3. No system or global config, no `GIT_*` of the caller's environment,
//!    no terminal prompt, no pager, no optional locks (status writes
//!    nothing), stdin closed.

use crate::core::error::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Command keys git documents, each set to a value that starts nothing: an
/// empty command is none to git (or, for `diff.external`, one that fails to
/// start), `/dev/null` holds no hooks.
const OVERRIDES: &[(&str, &str)] = &[
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.useBuiltinFSMonitor", "false"),
    ("core.pager", ""),
    ("core.editor", ""),
    ("sequence.editor", ""),
    ("core.askPass", ""),
    ("core.sshCommand", ""),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),
    ("gpg.program", ""),
    ("gpg.openpgp.program", ""),
    ("gpg.x509.program", ""),
    ("gpg.ssh.program", ""),
    ("gpg.ssh.defaultKeyCommand", ""),
    ("diff.external", ""),
    ("diff.trustExitCode", "false"),
    ("merge.tool", ""),
    ("diff.tool", ""),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("uploadpack.packObjectsHook", ""),
    ("receive.procReceiveRefs", ""),
    ("web.browser", ""),
    ("man.viewer", ""),
    // A ref our call makes (`worktree add -b`) logs the repository's
    // ident: the agent's `user.name` must not be the text git appends.
    ("user.name", "ai-sessions"),
    ("user.email", "ai-sessions@localhost"),
];

/// The keys of a driver section that name a program.
fn driver_keys(section: &str) -> &'static [&'static str] {
    match section {
        "filter" => &["clean", "smudge", "process"],
        "diff" => &["command", "textconv"],
        "merge" => &["driver"],
        // Hooks defined in config (newer git): each one's command emptied
        // where Landlock is missing (`core.hooksPath` does not reach them).
        "hook" => &["command"],
        _ => &[],
    }
}

/// Runs `git -C dir args…` hardened; its stdout, trimmed. A failure is an
/// error naming the arguments and git's own message (made printable).
pub fn run(dir: &Path, args: &[&str]) -> Result<String> {
    finish(args, output(dir, args)?)
}

/// [`run`] in the work tree `dir` itself (`GIT_WORK_TREE`): the box may
/// set `core.worktree` (in `config.worktree` of its worktree's git dir) to
/// `/` or `$HOME`, and our `status` would walk and hash that instead.
pub fn run_in_work_tree(dir: &Path, args: &[&str]) -> Result<String> {
    let overrides = overrides_for(dir);
    let args = without_submodule_runs(args, confined());
    let mut cmd = command(dir, &args, &overrides, true);
    cmd.env("GIT_WORK_TREE", dir);
    finish(&args, watched(cmd)?)
}

/// [`run_in_work_tree`], its output untrimmed (a diff, whose last context
/// line may be a lone space) and cut at `cap` bytes: then git is stopped
/// (its pipe closed) and the output is `cap` bytes long.
pub fn output_in_work_tree(dir: &Path, args: &[&str], cap: u64) -> Result<Output> {
    let overrides = overrides_for(dir);
    let mut cmd = command(dir, args, &overrides, true);
    cmd.env("GIT_WORK_TREE", dir);
    watched_capped(cmd, cap)
}

/// Runs `git -C dir args…` hardened; its whole output.
pub fn output(dir: &Path, args: &[&str]) -> Result<Output> {
    let overrides = overrides_for(dir);
    let args = without_submodule_runs(args, confined());
    watched(command(dir, &args, &overrides, true))
}

/// Why a git call was stopped by [`watched`].
pub const STOPPED_ON_A_FIFO: &str =
    "git waited on a FIFO the repository names (an include.path in its .git/config?); stopped";

/// Runs a git command to its end, unless it (or a git it started) sleeps
/// on a FIFO: the repository's config may `include.path` a FIFO the box
/// made (in its `.git`), and git's open of it waits for a writer forever,
/// or reads forever from one the box holds open. Nothing of ours reads a
/// FIFO, so a git that waits on one for a second is killed and the call
/// fails with the reason (`worktree list`, `-w <TAB>` and a `-w` start
/// hung on it).
fn watched(cmd: Command) -> Result<Output> {
    watched_capped(cmd, u64::MAX)
}

/// [`watched`], reading at most `cap` bytes of stdout (then its pipe is
/// closed: git ends on the broken pipe instead of filling our memory).
fn watched_capped(mut cmd: Command, cap: u64) -> Result<Output> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::Other(format!("git: {e}"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(err)?;
    let drain = |p: Option<Box<dyn Read + Send>>, cap: u64| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = p {
                let _ = p.take(cap).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _), cap);
    let errs = drain(child.stderr.take().map(|p| Box::new(p) as _), 1 << 20);
    let (mut stuck, mut nap) = (std::time::Duration::ZERO, 1);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(err)? {
            break s;
        }
        let tree = process_tree(child.id());
        if tree.iter().any(|p| on_a_fifo(*p)) {
            stuck += std::time::Duration::from_millis(nap);
        } else {
            stuck = std::time::Duration::ZERO;
        }
        if stuck >= std::time::Duration::from_secs(1) {
            for p in tree.iter().rev() {
                // SAFETY: a plain kill of a process of ours.
                unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.wait();
            let _ = (out.join(), errs.join());
            return Err(Error::Invalid(STOPPED_ON_A_FIFO.into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(nap));
        nap = (nap * 2).min(50);
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: errs.join().unwrap_or_default(),
    })
}

/// `pid` and the processes it started, parents first (Linux; elsewhere
/// `pid` alone).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 64 {
        let p = out[i];
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        out.extend(
            kids.split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok()),
        );
        i += 1;
    }
    out
}

/// Whether `pid` sleeps opening or reading a FIFO or pipe (its kernel
/// wait channel; Linux only).
fn on_a_fifo(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| {
        w == "wait_for_partner"
            || w.contains("fifo")
            || (w.contains("pipe") && !w.contains("write"))
    })
}

/// `status` runs `git status` in each submodule's work tree, under that
/// submodule's own config (`.git/modules/<name>/config`, the agent's to
/// write), whose drivers our overrides do not name: without Landlock its
/// `filter.*.clean` would run. There it does not look into submodules
/// (`--ignore-submodules=dirty`; the caller counts a checked-out one as a
/// change, see `worktree::inventory::changes`).
fn without_submodule_runs<'a>(args: &[&'a str], confined: bool) -> Vec<&'a str> {
    let mut out = args.to_vec();
    if !confined && args.first() == Some(&"status") {
        out.insert(1, "--ignore-submodules=dirty");
    }
    out
}

/// [`run`] for a call that writes (`worktree add`, `worktree remove`):
/// under Landlock git may also write only beneath `writable` (the common
/// git dir, the worktree's parent). The git dir is the agent's: a link it
/// plants there (`logs/refs/heads/ai/x -> ~/.bashrc`, a reflog git appends
/// to) is resolved by the kernel to a place outside, and refused.
pub fn run_writing(dir: &Path, args: &[&str], writable: &[&Path]) -> Result<String> {
    run_writing_as(dir, args, writable, None)
}

/// [`run_writing`] for a call that makes commits the user will own (a
/// `land` merge, a `--commit`): author and committer are `who`, not the
/// repository's `user.*` (the agent's to write) nor our placeholder.
pub fn run_writing_as(
    dir: &Path,
    args: &[&str],
    writable: &[&Path],
    who: Option<&Identity>,
) -> Result<String> {
    finish(args, output_writing_as(dir, args, writable, who)?)
}

/// [`run_writing_as`], its whole output: for a call whose exit code is an
/// answer (`merge-tree` exits 1 on a conflict, its stdout naming the files).
pub fn output_writing_as(
    dir: &Path,
    args: &[&str],
    writable: &[&Path],
    who: Option<&Identity>,
) -> Result<Output> {
    output_writing_env(dir, args, writable, who, &[])
}

/// [`run_writing_as`] with paths given to git through its environment:
/// `GIT_INDEX_FILE` (a scratch index: the user's own stays as it is),
/// `GIT_WORK_TREE`, `GIT_DIR`. Only these three are accepted.
pub fn run_writing_env(
    dir: &Path,
    args: &[&str],
    writable: &[&Path],
    who: Option<&Identity>,
    env: &[(&str, &Path)],
) -> Result<String> {
    finish(args, output_writing_env(dir, args, writable, who, env)?)
}

fn output_writing_env(
    dir: &Path,
    args: &[&str],
    writable: &[&Path],
    who: Option<&Identity>,
    env: &[(&str, &Path)],
) -> Result<Output> {
    let overrides = overrides_for(dir);
    let mut cmd = command(dir, args, &overrides, true);
    for (k, v) in env {
        if !matches!(*k, "GIT_INDEX_FILE" | "GIT_WORK_TREE" | "GIT_DIR") {
            return Err(Error::Other(format!("git: {k} is not a path we give git")));
        }
        cmd.env(k, v);
    }
    if let Some(who) = who {
        for (k, v) in who.env() {
            cmd.env(k, v);
        }
    }
    let Some(rules) = tools()
        .and_then(|t| t.landlock.as_ref())
        .and_then(|_| landlock::Ruleset::writing_only(writable))
    else {
        return watched(cmd);
    };
    let fd = rules.ruleset;
    // SAFETY: as in `command`; `rules` outlives the child's exec.
    unsafe {
        cmd.pre_exec(move || landlock::restrict(fd));
    }
    // `rules` (its fd) lives to the end of this scope, past the exec.
    watched(cmd)
}

/// Who the user commits as: `GIT_AUTHOR_*`/`GIT_COMMITTER_*` of the
/// caller's environment, else `user.*` of the repository's own config, else
/// of the user's global config. Control characters are dropped (the
/// repository's config is the agent's to write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Identity {
    /// The user's identity for commits in `repo` (`None`: global only).
    pub fn of(repo: Option<&Path>) -> Identity {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| clean(&v))
                .filter(|v| !v.is_empty())
        };
        let local = |k: &str| {
            repo.and_then(|r| {
                // Only the repository's own file: not the global config,
                // nor our own placeholder ident (given as command-line
                // config, which a plain `--get` would return).
                run(r, &["config", "--local", "--get", k])
                    .ok()
                    .map(|v| clean(&v))
                    .filter(|v| !v.is_empty())
            })
        };
        let name = env("GIT_AUTHOR_NAME")
            .or_else(|| local("user.name"))
            .or_else(|| global_config("user.name"));
        let email = env("GIT_AUTHOR_EMAIL")
            .or_else(|| local("user.email"))
            .or_else(|| global_config("user.email"))
            .or_else(|| env("EMAIL"));
        Identity { name, email }
    }

    /// Whether git has both halves (else a commit fails: "Author identity
    /// unknown").
    pub fn complete(&self) -> bool {
        self.name.is_some() && self.email.is_some()
    }

    /// The environment that makes git commit as this identity.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = &self.name {
            out.push(("GIT_AUTHOR_NAME", n.clone()));
            out.push(("GIT_COMMITTER_NAME", n.clone()));
        }
        if let Some(e) = &self.email {
            out.push(("GIT_AUTHOR_EMAIL", e.clone()));
            out.push(("GIT_COMMITTER_EMAIL", e.clone()));
        }
        out
    }
}

fn clean(v: &str) -> String {
    let v: String = v.chars().filter(|c| !c.is_control()).collect();
    v.trim().chars().take(256).collect()
}

/// A key of the user's global git config (`~/.gitconfig`, the XDG one),
/// read outside any repository: no repository's config can answer.
pub fn global_config(key: &str) -> Option<String> {
    let git = tools().map_or(Path::new("git"), |t| t.git.as_path());
    let mut cmd = Command::new(git);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&k);
        }
    }
    // `--includes`: an identity kept in a file the global config
    // includes (`[include] path = ~/.gitconfig.local`) is the user's too.
    cmd.args(["config", "--global", "--includes", "--get", key])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Pushes the commit `sha` of the repository whose common git dir is
/// `common` to `refs/heads/<branch>` of `url`, as the user: their own git
/// config (credential helpers, ssh, `insteadOf`) applies, so a push works
/// as it does for them, and nothing of the repository's does (its config,
/// hooks and attributes are the agent's to write). The push runs from a
/// scratch repository of ours that only borrows the objects
/// (`objects/info/alternates`). `url` (the agent may have written it) is
/// refused unless it is a plain http(s)/ssh/git URL, `user@host:path` or an
/// absolute path: never a `<transport>::` helper nor an option.
pub fn push_as_user(common: &Path, url: &str, sha: &str, branch: &str) -> Result<()> {
    let plain = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|p| url.starts_with(p))
        || url.starts_with('/')
        || url.split_once(':').is_some_and(|(host, _)| {
            !host.is_empty() && !host.contains('/') && !url.contains("::")
        });
    if !plain || url.starts_with('-') || url.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "origin's push URL {:?} is not one land pushes to (http(s), ssh, git, a path)",
            super::printable(url)
        )));
    }
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) || branch.starts_with('-') {
        return Err(Error::Invalid(format!("not a commit to push: {sha}")));
    }
    let scratch = tempfile::Builder::new()
        .prefix("ai-sessions-push")
        .tempdir()
        .map_err(|e| Error::Other(format!("a scratch repository: {e}")))?;
    let git = tools().map_or(Path::new("git"), |t| t.git.as_path());
    let user_git = |args: &[&str]| {
        let mut cmd = Command::new(git);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("GIT_DIR", scratch.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "protocol.ext.allow=never",
            ])
            .args(args)
            .current_dir(scratch.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Other(format!("git: {e}")))
            .and_then(|out| finish(args, out))
    };
    user_git(&["init", "--quiet", "--bare"])?;
    let alternates = scratch.path().join("objects/info/alternates");
    let objects = common.join("objects");
    std::fs::write(&alternates, format!("{}\n", objects.display()))
        .map_err(|e| Error::io(&alternates, e))?;
    let spec = format!("{sha}:refs/heads/{branch}");
    user_git(&["push", "--quiet", "--no-verify", "--", url, &spec]).map(|_| ())
}

fn finish(args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(super::printable)
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The driver names (section, name) the repository's config defines.
fn drivers(dir: &Path) -> Vec<(String, String)> {
    let args = [
        "config",
        "--null",
        "--name-only",
        "--get-regexp",
        r"^(filter|diff|merge|hook)\..*\.",
    ];
    let Ok(out) = watched(command(dir, &args, &[], true)) else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    for key in out.stdout.split(|b| *b == 0) {
        let key = String::from_utf8_lossy(key);
        let Some((section, rest)) = key.split_once('.') else {
            continue;
        };
        let Some((name, _)) = rest.rsplit_once('.') else {
            continue;
        };
        let d = (section.to_ascii_lowercase(), name.to_owned());
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    seen
}

/// The overrides for `dir`: [`OVERRIDES`] and each configured driver.
fn overrides_for(dir: &Path) -> Vec<(String, String)> {
    let mut overrides: Vec<(String, String)> = OVERRIDES
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // The user's own global ignore file still applies (their global config
    // is not read: its filters and hooks would run on the box's files).
    if let Some(f) = tools().and_then(|t| t.excludes_file.as_ref()) {
        overrides.push(("core.excludesFile".to_owned(), f.clone()));
    }
    overrides.extend(drivers(dir).into_iter().flat_map(|(section, name)| {
        driver_keys(&section)
            .iter()
            .map(move |k| (format!("{section}.{name}.{k}"), String::new()))
            .collect::<Vec<_>>()
    }));
    overrides
}

fn command(dir: &Path, args: &[&str], overrides: &[(String, String)], confine: bool) -> Command {
    let tools = tools();
    let mut cmd = Command::new(tools.map_or(Path::new("git"), |t| t.git.as_path()));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_PAGER", "")
        .env_remove("PAGER")
        .env("GIT_CONFIG_COUNT", overrides.len().to_string());
    for (i, (k, v)) in overrides.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    cmd.arg("--no-pager")
        .arg("-C")
        .arg(dir)
        .args(args.iter().map(OsStr::new))
        .stdin(Stdio::null());
    if let Some(rules) = tools.and_then(|t| t.landlock.as_ref()).filter(|_| confine) {
        let fd = rules.ruleset;
        // SAFETY: only async-signal-safe syscalls on an fd the parent keeps
        // open for the life of the process.
        unsafe {
            cmd.pre_exec(move || landlock::restrict(fd));
        }
    }
    cmd
}

struct Tools {
    git: PathBuf,
    /// `core.excludesFile` of the user's global config.
    excludes_file: Option<String>,
    landlock: Option<landlock::Ruleset>,
}

fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Option<Tools>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let git = find_in_path("git")?;
            let exec_path = Command::new(&git)
                .arg("--exec-path")
                .env_remove("GIT_EXEC_PATH")
                .stdin(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))?;
            let mut allowed = vec![git.clone(), exec_path.clone()];
            for bin in [git.clone(), exec_path.join("git")] {
                if let Some(interp) = elf_interpreter(&bin) {
                    allowed.push(interp);
                }
            }
            let excludes_file = Command::new(&git)
                .args(["config", "--global", "--path", "--get", "core.excludesFile"])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .current_dir("/")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|f| !f.is_empty());
            // A git that is a script (a wrapper) cannot run under the
            // ruleset: then only the config layer holds.
            let landlock = landlock::Ruleset::executing_only(&allowed).filter(|r| {
                let fd = r.ruleset;
                let mut probe = Command::new(&git);
                probe.arg("--version").stdin(Stdio::null());
                // SAFETY: as in `command`.
                unsafe {
                    probe.pre_exec(move || landlock::restrict(fd));
                }
                probe.output().is_ok_and(|o| o.status.success())
            });
            Some(Tools {
                landlock,
                excludes_file,
                git,
            })
        })
        .as_ref()
}

/// Whether git's children are confined to git's own programs (layer 1).
pub fn confined() -> bool {
    tools().is_some_and(|t| t.landlock.is_some())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|p| p.canonicalize().ok())
}

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF
/// executable: the kernel opens it for execution too.
fn elf_interpreter(bin: &Path) -> Option<PathBuf> {
    let raw = std::fs::read(bin).ok()?;
    if raw.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(raw.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(raw.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    for i in 0..usize::from(u16_at(0x38)?) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32::from_le_bytes(raw.get(ph..ph + 4)?.try_into().ok()?) != 3 {
            continue;
        }
        let off = usize::try_from(u64_at(ph + 8)?).ok()?;
        let len = usize::try_from(u64_at(ph + 32)?).ok()?;
        let s = raw.get(off..off.checked_add(len)?)?;
        let s = s.split(|b| *b == 0).next()?;
        use std::os::unix::ffi::OsStrExt;
        return Path::new(OsStr::from_bytes(s)).canonicalize().ok();
    }
    None
}

/// No Landlock outside Linux: only the config layer holds there.
#[cfg(not(target_os = "linux"))]
mod landlock {
    pub struct Ruleset {
        pub ruleset: libc::c_int,
    }

    impl Ruleset {
        pub fn executing_only(_: &[std::path::PathBuf]) -> Option<Ruleset> {
            None
        }

        pub fn writing_only(_: &[&std::path::Path]) -> Option<Ruleset> {
            None
        }
    }

    pub fn restrict(_: libc::c_int) -> std::io::Result<()> {
        Ok(())
    }
}

/// The few Landlock calls needed, by raw syscall (ABI 1 is enough:
/// `LANDLOCK_ACCESS_FS_EXECUTE` is in it).
#[cfg(target_os = "linux")]
mod landlock {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    const ACCESS_FS_EXECUTE: u64 = 1;
    const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
    /// Write, remove and make (every kind): the rights of ABI 1 but
    /// execute and read.
    const WRITE_ACCESS: u64 = ACCESS_FS_WRITE_FILE | (0x1ff << 4);
    const ACCESS_FS_REFER: u64 = 1 << 13;
    const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
    const RULE_PATH_BENEATH: libc::c_int = 1;
    const CREATE_RULESET_VERSION: libc::c_uint = 1;

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
    }

    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }

    pub struct Ruleset {
        pub ruleset: libc::c_int,
        _fd: OwnedFd,
    }

    impl Ruleset {
        /// A ruleset under which only `allowed` (files, or directories and
        /// everything beneath) can be executed; `None` when the kernel has
        /// no Landlock or a path cannot be opened.
        pub fn executing_only(allowed: &[PathBuf]) -> Option<Ruleset> {
            let rules: Vec<_> = allowed
                .iter()
                .map(|p| (p.as_path(), ACCESS_FS_EXECUTE))
                .collect();
            build(ACCESS_FS_EXECUTE, &rules)
        }

        /// A ruleset under which files and directories can be written,
        /// made, removed and renamed only beneath `allowed` (and
        /// `/dev/null` written); `None` as for [`Ruleset::executing_only`].
        pub fn writing_only(allowed: &[&Path]) -> Option<Ruleset> {
            let abi = abi()?;
            let mut handled = WRITE_ACCESS;
            if abi >= 2 {
                handled |= ACCESS_FS_REFER;
            }
            if abi >= 3 {
                handled |= ACCESS_FS_TRUNCATE;
            }
            let file = handled & (ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE);
            let mut rules: Vec<_> = allowed.iter().map(|p| (*p, handled)).collect();
            rules.push((Path::new("/dev/null"), file));
            build(handled, &rules)
        }
    }

    fn abi() -> Option<libc::c_long> {
        // SAFETY: the version probe takes no pointer.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        (abi >= 1).then_some(abi)
    }

    /// A ruleset handling `handled`, granting each path its rights.
    fn build(handled: u64, allowed: &[(&Path, u64)]) -> Option<Ruleset> {
        abi()?;
        let attr = RulesetAttr {
            handled_access_fs: handled,
        };
        // SAFETY: attr lives across the call; its size is passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        let fd = libc::c_int::try_from(fd).ok().filter(|f| *f >= 0)?;
        // SAFETY: a fresh fd the kernel just gave us.
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        for (p, access) in allowed {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(p)
                .ok()?;
            let rule = PathBeneathAttr {
                allowed_access: *access,
                parent_fd: f.as_raw_fd(),
            };
            // SAFETY: rule lives across the call.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    fd,
                    RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            if r != 0 {
                return None;
            }
        }
        Some(Ruleset {
            ruleset: fd,
            _fd: owned,
        })
    }

    /// In the child, before `exec`: no new privileges, then the ruleset.
    pub fn restrict(fd: libc::c_int) -> std::io::Result<()> {
        // SAFETY: plain syscalls, async-signal-safe.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_cannot_start_a_shell_under_the_ruleset() {
        if !confined() {
            eprintln!("SKIP: no Landlock in this kernel");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        run(dir.path(), &["init", "-q"]).unwrap();
        // An alias runs through sh: under the ruleset it cannot start.
        let mut cmd = command(
            dir.path(),
            &["x"],
            &[("alias.x".to_owned(), format!("!touch {}", canary.display()))],
            true,
        );
        let _ = cmd.output().unwrap();
        assert!(!canary.exists(), "sh ran under the ruleset");
        assert_eq!(
            run(dir.path(), &["rev-parse", "--is-inside-work-tree"]).unwrap(),
            "true"
        );
    }

    /// The repository's own `user.*` is the user's identity there (a plain
    /// `config --get` returned our placeholder ident instead).
    #[test]
    fn identity_reads_the_repositorys_user_not_our_placeholder() {
        if std::env::var_os("GIT_AUTHOR_NAME").is_some()
            || std::env::var_os("GIT_AUTHOR_EMAIL").is_some()
        {
            eprintln!("SKIP: GIT_AUTHOR_* set in the environment");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        run(t.path(), &["init", "-q"]).unwrap();
        let cfg = t.path().join(".git/config");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str("[user]\n\tname = Repo\u{1b} Person\n\temail = repo@example.com\n");
        std::fs::write(&cfg, text).unwrap();
        let who = Identity::of(Some(t.path()));
        assert_eq!(who.name.as_deref(), Some("Repo Person"));
        assert_eq!(who.email.as_deref(), Some("repo@example.com"));
        assert!(who
            .env()
            .contains(&("GIT_COMMITTER_EMAIL", "repo@example.com".into())));
    }

    /// Without Landlock, `status` in a repository with a submodule whose
    /// own config and attributes name a clean filter runs none.
    #[test]
    fn without_landlock_status_does_not_run_a_submodules_filter() {
        let t = tempfile::tempdir().unwrap();
        let (sub, sup, canary) = (
            t.path().join("sub"),
            t.path().join("sup"),
            t.path().join("pwned"),
        );
        let plain = |dir: &Path, args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(["-c", "core.hooksPath=/dev/null"])
                .args(["-c", "protocol.file.allow=always"])
                .args(args)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{args:?}");
        };
        plain(t.path(), &["init", "-q", "-b", "main", "sub"]);
        std::fs::write(sub.join("f"), "s\n").unwrap();
        plain(&sub, &["add", "f"]);
        plain(&sub, &["commit", "-q", "-m", "s"]);
        plain(t.path(), &["init", "-q", "-b", "main", "sup"]);
        plain(&sup, &["submodule", "-q", "add", "../sub", "s"]);
        plain(&sup, &["commit", "-q", "-m", "s"]);
        let m = sup.join(".git/modules/s");
        let mut cfg = std::fs::read_to_string(m.join("config")).unwrap();
        cfg.push_str(&format!(
            "[filter \"y\"]\n\tclean = \"touch {}; cat\"\n",
            canary.display()
        ));
        std::fs::write(m.join("config"), cfg).unwrap();
        std::fs::create_dir_all(m.join("info")).unwrap();
        std::fs::write(m.join("info/attributes"), "* filter=y\n").unwrap();
        // Same size, new content: git must clean it to compare.
        std::fs::write(sup.join("s/f"), "t\n").unwrap();
        let args = without_submodule_runs(&["status", "--porcelain"], false);
        let out = command(&sup, &args, &overrides_for(&sup), false)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(!canary.exists(), "the submodule's filter ran");
        // The scene is live: without the flag it runs.
        let _ = command(&sup, &["status"], &overrides_for(&sup), false).output();
        assert!(canary.exists(), "the poison is not live");
    }

    /// The config layer alone (as on a kernel without Landlock): a
    /// repository whose config and attributes name programs for drivers
    /// and command keys, with hooks, runs none at status, diff, checkout.
    #[test]
    fn hooks_defined_in_config_get_their_command_emptied() {
        let t = tempfile::tempdir().unwrap();
        let ok = Command::new("git")
            .args(["init", "-q"])
            .arg(t.path())
            .status()
            .unwrap();
        assert!(ok.success());
        let cfg = t.path().join(".git/config");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str("[hook \"x.y\"]\n\tcommand = touch /tmp/pwned\n\tevent = pre-commit\n");
        std::fs::write(&cfg, text).unwrap();
        let o = overrides_for(t.path());
        assert!(
            o.contains(&("hook.x.y.command".to_owned(), String::new())),
            "{o:?}"
        );
    }

    #[test]
    fn the_overrides_alone_neutralise_drivers_keys_and_hooks() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (repo, canary) = (t.path().join("r"), t.path().join("canary"));
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        let plain = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(["-c", "core.hooksPath=/dev/null"])
                .args(args)
                .status()
                .unwrap();
            assert!(ok.success(), "{args:?}");
        };
        plain(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("a"), "a\n").unwrap();
        plain(&["add", "a"]);
        plain(&["commit", "-q", "-m", "a"]);
        let touch = |what: &str| format!("\"touch {}/{what}; cat\"", canary.display());
        let mut cfg = std::fs::read_to_string(repo.join(".git/config")).unwrap();
        for (section, key) in [
            ("filter \"odd.name=x\"", "clean"),
            ("filter \"odd.name=x\"", "smudge"),
            ("diff \"d\"", "textconv"),
            ("merge \"m\"", "driver"),
            ("core", "fsmonitor"),
            ("core", "pager"),
            ("core", "editor"),
            ("core", "sshCommand"),
            ("credential", "helper"),
            ("gpg", "program"),
        ] {
            cfg.push_str(&format!("[{section}]\n\t{key} = {}\n", touch(key)));
        }
        std::fs::write(repo.join(".git/config"), cfg).unwrap();
        std::fs::create_dir_all(repo.join(".git/info")).unwrap();
        std::fs::write(
            repo.join(".git/info/attributes"),
            "* filter=odd.name=x diff=d merge=m\n",
        )
        .unwrap();
        std::fs::create_dir_all(repo.join(".git/hooks")).unwrap();
        for h in [
            "post-checkout",
            "reference-transaction",
            "post-index-change",
        ] {
            let f = repo.join(".git/hooks").join(h);
            std::fs::write(&f, format!("#!/bin/sh\ntouch {}/{h}\n", canary.display())).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(repo.join("a"), "changed\n").unwrap();
        let unconfined = |args: &[&str]| {
            let out = command(&repo, args, &overrides_for(&repo), false)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        unconfined(&["status", "--porcelain"]);
        // An emptied `diff.external` fails to start "" (nothing runs).
        let _ = command(&repo, &["diff"], &overrides_for(&repo), false).output();
        unconfined(&["checkout", "-q", "-b", "other"]);
        unconfined(&["checkout", "-q", "-f", "main"]);
        let fired: Vec<_> = std::fs::read_dir(&canary)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(fired.is_empty(), "ran: {fired:?}");
        // The scene is live: plain git runs them.
        std::fs::write(repo.join("a"), "again\n").unwrap();
        let _ = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .arg("status")
            .output();
        assert!(
            std::fs::read_dir(&canary).unwrap().next().is_some(),
            "the poison is not live"
        );
    }

    /// A push URL the agent wrote that names a transport helper or an
    /// option never reaches git.
    #[test]
    fn a_push_url_naming_a_helper_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for url in [
            format!("ext::sh -c touch% {}", canary.display()),
            "fd::3".to_owned(),
            "--upload-pack=touch /tmp/x".to_owned(),
            "relative/path".to_owned(),
            "https://host/r\n".to_owned(),
        ] {
            let e = push_as_user(dir.path(), &url, sha, "b").unwrap_err();
            assert!(
                e.to_string().contains("not one land pushes to"),
                "{url}: {e}"
            );
        }
        assert!(!canary.exists());
        assert!(push_as_user(dir.path(), "/srv/r.git", "HEAD; rm", "b").is_err());
    }
}
