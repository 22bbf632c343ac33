//! Shared test harness: a private state dir per test, the real binary, the
//! real engine (skip loudly without one, fail with
//! AI_SESSIONS_REQUIRE_DOCKER=1), and the fake-agent image built locally.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ai-sessctl");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One isolated user: state dir, projects dir, a port range of its own
/// (so tests running in parallel never race for a port), unique names.
pub struct Env {
    pub home: tempfile::TempDir,
    pub projects: tempfile::TempDir,
    pub token: String,
    pub port_base: u16,
    /// The flock on this env's port slot, released after `drop` cleaned up.
    _port_slot: Option<std::fs::File>,
}

/// Port ranges `[20000 + 100 * slot, +99]`, one slot per live `Env`.
const PORT_SLOTS: u32 = 300;

/// Takes the first free slot from `start` on, by flock on a file per slot
/// under the temp dir: free among every test process of this machine (the
/// `it` binary, zz_fault_engine_restart, another checkout's run), which
/// otherwise pick the same range now and then (the engine then refuses a
/// start: "port is already allocated"). Without a lock dir, `start` as is.
fn take_port_slot(start: u32) -> (u32, Option<std::fs::File>) {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("ai-sessions-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return (start, None);
    }
    for i in 0..PORT_SLOTS {
        let slot = (start + i) % PORT_SLOTS;
        let Ok(f) = std::fs::File::create(dir.join(format!("slot-{slot}.lock"))) else {
            continue;
        };
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (slot, Some(f));
        }
    }
    (start, None)
}

impl Env {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let (slot, port_slot) =
            take_port_slot((pid.wrapping_mul(31).wrapping_add(n * 7919)) % PORT_SLOTS);
        let home = tempfile::Builder::new()
            .prefix("ais-home")
            .tempdir()
            .unwrap();
        let projects = tempfile::Builder::new()
            .prefix("ais-proj")
            .tempdir()
            .unwrap();
        let token = format!("t{}x{n}", pid % 100_000);
        let env = Env {
            home,
            projects,
            token,
            port_base: 20000 + (slot as u16) * 100,
            _port_slot: port_slot,
        };
        env.write_config("");
        env
    }

    pub fn state(&self) -> &Path {
        self.home.path()
    }

    /// Writes config.toml: a private port range plus `extra`.
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "[networking]\nport_range = [{}, {}]\n\n{extra}",
            self.port_base,
            self.port_base + 99
        );
        std::fs::write(self.state().join("config.toml"), text).unwrap();
    }

    /// Config for container tests: the fake-agent image for both agents.
    pub fn use_test_image(&self, extra: &str) {
        let agent_image = test_image_tag();
        self.write_config(&format!(
            "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n[resources.memory]\nlimit = \"128Mi\"\n\n\
             [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = [\"AIS_TEST_SECRET\"]\n\n\
             [agents.gemini]\nimage = \"{agent_image}\"\n\n{extra}"
        ));
    }

    /// A unique project name for this test (ids are global to the engine).
    pub fn unique(&self, name: &str) -> String {
        format!("{name}-{}", self.token)
    }

    /// Creates `<projects>/<rel>` and returns its canonical path.
    pub fn project(&self, rel: &str) -> PathBuf {
        let p = self.projects.path().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p.canonicalize().unwrap()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("AI_SESSIONS_HOME", self.state())
            .env("NO_COLOR", "1")
            .env_remove("COMPLETE")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.cmd().current_dir(dir).args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ai-sessctl {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn registry(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state().join("registry.json"))
            .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap()
    }

    pub fn instance(&self, id: &str) -> serde_json::Value {
        self.registry()["instances"][id].clone()
    }
}

impl Drop for Env {
    /// Removes every container, network and volume of this test's state home (by
    /// its `ai.home` label), and containers of the old name form
    /// `ai-<id>` its registry knows of.
    fn drop(&mut self) {
        if !docker_answers() {
            return;
        }
        stop_network_pool(self.state());
        let label = format!("label=ai.home={}", home_label(self.state()));
        let ids = |what: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(what)
                .args(["-q", "--filter", &label])
                .output()
                .map(|o| stdout(&o).split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        // A test may leave a corrupt registry on purpose: then by label only.
        let reg: serde_json::Value = std::fs::read_to_string(self.state().join("registry.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut containers = ids(&["ps", "-a"]);
        if let Some(map) = reg["instances"].as_object() {
            containers.extend(map.keys().map(|id| format!("ai-{id}")));
        }
        let quiet = |args: &[&str], names: &[String]| {
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args(args)
                    .args(names)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        };
        quiet(&["rm", "-f"], &containers);
        quiet(&["network", "rm"], &ids(&["network", "ls"]));
        // A clone instance's volumes (its repository, its state).
        quiet(&["volume", "rm", "-f"], &ids(&["volume", "ls"]));
    }
}

/// Before a state home goes: no network is made ahead for it any more
/// (its pool's size is 0), and a helper making one has finished (its lock
/// is free), so that no network of it comes after its networks went.
pub fn stop_network_pool(state: &Path) {
    use std::os::fd::AsRawFd;
    let _ = std::fs::write(state.join("config.toml"), "[networking]\npool = 0\n");
    let lock = state.join("net-pool").join(".fill.lock");
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&lock) {
        // SAFETY: flock on a descriptor we own; released when it closes.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
}

/// The `ai.home` label of a state home (its canonical path).
pub fn home_label(state: &Path) -> String {
    state
        .canonicalize()
        .unwrap_or_else(|_| state.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// The engine name instance `id` of `env` gets: `ai-<id>-<6 hex digits of
/// the sha256 of the state home>` (known before the container exists).
pub fn cname_in(env: &Env, id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(home_label(env.state()).as_bytes());
    format!("ai-{id}-{:02x}{:02x}{:02x}", d[0], d[1], d[2])
}

/// The engine name of instance `id`'s container: `ai-<id>-<6 hex>`, found
/// by its `ai.instance` label (ids are unique per test); `ai-<id>` when no
/// such container exists.
pub fn cname(id: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=ai.instance={id}"))
        .output();
    let names: Vec<String> = out
        .map(|o| stdout(&o).lines().map(str::to_owned).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [one] => one.clone(),
        _ => format!("ai-{id}"),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn docker_answers() -> bool {
    static ANSWERS: OnceLock<bool> = OnceLock::new();
    *ANSWERS.get_or_init(|| {
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// True when the engine answers. Otherwise prints a loud skip notice, or
/// panics when AI_SESSIONS_REQUIRE_DOCKER=1.
pub fn docker_or_skip(test: &str) -> bool {
    if docker_answers() {
        return true;
    }
    if std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: no container engine answers and AI_SESSIONS_REQUIRE_DOCKER=1");
    }
    eprintln!("\n*** SKIPPED {test}: no container engine answers (docker version failed) ***\n");
    false
}

/// Skips the test (loudly) unless an engine answers; builds the test image;
/// holds the test's turn on the engine (`docker_turn`) until the calling
/// block ends. `require_docker!(alone)`: no other engine test meanwhile.
/// In scope everywhere through `#[macro_use] mod common;`.
macro_rules! require_docker {
    () => {
        require_docker!(@turn false)
    };
    (alone) => {
        require_docker!(@turn true)
    };
    (@turn $alone:expr) => {
        let name = {
            fn f() {}
            std::any::type_name_of_val(&f).trim_end_matches("::f")
        };
        let Some(_engine_turn) = $crate::common::docker_turn(name, $alone) else {
            return;
        };
    };
}

/// Every engine test runs in one process with the others (two at a time,
/// cargo's default on 2 cores). Most share the engine; a test that loads
/// it so much that a neighbour's time limits would no longer hold (50
/// concurrent starts) has it alone.
static ENGINE: RwLock<()> = RwLock::new(());

/// A test's turn on the engine: shared, or alone.
pub enum EngineTurn {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// `require_docker!`: None (after a loud skip, or a panic with
/// AI_SESSIONS_REQUIRE_DOCKER=1) without an engine; else the test image is
/// there and the turn is held.
pub fn docker_turn(test: &str, alone: bool) -> Option<EngineTurn> {
    if !docker_or_skip(test) {
        return None;
    }
    test_image();
    Some(if alone {
        EngineTurn::Alone(ENGINE.write().unwrap_or_else(|p| p.into_inner()))
    } else {
        EngineTurn::Shared(ENGINE.read().unwrap_or_else(|p| p.into_inner()))
    })
}

/// `gc` and `registry repair` of any state home take a container labelled
/// `ai.managed-by` without an `ai.home` as their own (a stray of an older
/// version). Tests of every module share one process and one engine: a
/// test that plants such a container holds `plant_strays()`, and a test
/// that runs `gc` or `registry repair` holds `gc_turn()` meanwhile, so no
/// other test's gc or repair takes the plant (or adopts it) under it.
static STRAYS: RwLock<()> = RwLock::new(());

/// Held while a test runs `gc` or `registry repair` (shared).
pub fn gc_turn() -> RwLockReadGuard<'static, ()> {
    STRAYS.read().unwrap_or_else(|p| p.into_inner())
}

/// Held while a test's label-less stray exists (exclusive).
pub fn plant_strays() -> RwLockWriteGuard<'static, ()> {
    STRAYS.write().unwrap_or_else(|p| p.into_inner())
}

/// The test's own git, setting a scene (a committer, no hooks); its
/// stdout, trimmed. Asserts success.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A user's clone (`<projects>/<name>`) of a new bare repository
/// (`<name>-origin.git`, so `origin/HEAD` names `main`), whose first commit
/// holds `files`; `seed` is the checkout that pushed it, to push more.
pub struct Cloned {
    pub repo: PathBuf,
    pub bare: PathBuf,
    pub seed: PathBuf,
}

pub fn cloned(env: &Env, name: &str, files: &[(&str, &str)]) -> Cloned {
    let root = env.projects.path();
    let bare = root.join(format!("{name}-origin.git"));
    let seed = root.join(format!("{name}-seed"));
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(root, &["init", "-q", "-b", "main", seed.to_str().unwrap()]);
    for (path, text) in files {
        let f = seed.join(path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "init"]);
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(root, &["clone", "-q", bare.to_str().unwrap(), name]);
    Cloned {
        repo: root.join(name).canonicalize().unwrap(),
        bare,
        seed,
    }
}

/// The fake-agent image's tag, `ai-sessions-test-agent:<16 hex>`: the
/// sha256 of what goes into it (build.sh, the Dockerfile, the fake agent
/// and the host's busybox). A tag that exists holds exactly these files,
/// so it is built once and then reused by every later test process, and
/// checkouts with different fixtures never overwrite each other's image.
/// Naming it needs no engine.
pub fn test_image_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        use sha2::Digest;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent");
        let mut h = sha2::Sha256::new();
        for name in ["build.sh", "Dockerfile", "fake-agent"] {
            let bytes = std::fs::read(fixtures.join(name)).unwrap();
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        // Without busybox the build fails and says so (build.sh).
        if let Some(bytes) = which::which("busybox")
            .ok()
            .and_then(|p| std::fs::read(p).ok())
        {
            h.update(b"busybox");
            h.update(&bytes);
        }
        let d = h.finalize();
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("ai-sessions-test-agent:{hex}")
    })
}

/// The fake-agent image (`FROM scratch` with the host's static busybox),
/// built when its content tag does not exist yet: checked once per test
/// process; concurrent builders (other test processes, other checkouts)
/// are serialised by flock and look again once they hold it.
pub fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    let tag = test_image_tag();
    BUILT.get_or_init(|| {
        let exists = || {
            Command::new("docker")
                .args(["image", "inspect", "--format", "{{.Id}}", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if exists() {
            return;
        }
        let lock = std::fs::File::create(std::env::temp_dir().join("ai-sessions-test-image.lock"))
            .unwrap();
        let mut lock = fd_lock_compat::Lock(lock);
        lock.lock();
        if exists() {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent/build.sh");
        let out = Command::new("bash").arg(&script).arg(tag).output().unwrap();
        assert!(
            out.status.success(),
            "building the test image failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    });
    tag
}

/// flock without another dependency.
mod fd_lock_compat {
    use std::os::fd::AsRawFd;
    pub struct Lock(pub std::fs::File);
    impl Lock {
        pub fn lock(&mut self) {
            // SAFETY: flock on a file descriptor we own.
            unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_EX) };
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// `docker inspect` of a container, as JSON.
pub fn inspect(name: &str) -> Option<serde_json::Value> {
    // A container only: an instance's network has the container's name,
    // and may outlive it for a moment (`stop --all`'s helper).
    let out = Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

/// A git repository at `repo` (one empty commit on `main`) with a worktree
/// per name in the place `--worktree NAME` made them before Claude Code's
/// layout (`<repo>.worktrees/NAME` on branch `ai/NAME`), still found.
pub fn repo_with_worktrees(repo: &Path, names: &[&str]) {
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["commit", "-q", "--allow-empty", "-m", "init"]);
    let place = repo.with_file_name(format!(
        "{}.worktrees",
        repo.file_name().unwrap().to_string_lossy()
    ));
    for name in names {
        let to = place.join(name);
        git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("ai/{name}"),
            to.to_str().unwrap(),
        ]);
    }
}
