//! Gemini CLI's activity hooks, with the real Gemini CLI in its shipped
//! image, for a user who is not root (as nearly every user is): the
//! container runs as that user and the files of the state home are
//! theirs. Gemini CLI reads a system settings or defaults file only when root
//! owns it and every directory above it; the generated one must be read
//! without a warning, pass gemini's own validation, and its hooks must
//! report the agent's activity.
//!
//! Needs the image built by `.ci/run` (skips loudly without it, fails with
//! AI_SESSIONS_REQUIRE_REAL_AGENTS=1). Run as root, it acts as another
//! user.

use crate::common::{wait_until, Env, BIN};
use crate::docker_support::*;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The uid:gid the helper runs as: nobody's on a test machine.
const UID: u32 = 4242;

/// `ai-sessctl` run as a user who is not root, with its own state home:
/// this test's user, or when that is root, [`UID`] (with the engine
/// socket's group). What it started is removed when dropped.
struct OtherUser {
    dir: tempfile::TempDir,
    /// Root becomes [`UID`] with this group (the engine socket's).
    switch_to: Option<u32>,
}

impl OtherUser {
    fn new(env: &Env, image: &str) -> Option<OtherUser> {
        let me = String::from_utf8(Command::new("id").arg("-u").output().ok()?.stdout).ok()?;
        let switch_to = if me.trim() == "0" {
            let Ok(socket) = std::fs::metadata("/var/run/docker.sock") else {
                eprintln!("\n*** SKIPPED: root, and no local engine socket to reach as another user ***\n");
                return None;
            };
            Some(socket.gid())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("ais-user")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let u = OtherUser { dir, switch_to };
        for d in [u.state(), u.home(), u.project()] {
            std::fs::create_dir_all(&d).unwrap();
        }
        // A copy of the binary: the build tree may not be reachable for
        // another user.
        std::fs::copy(BIN, u.bin()).unwrap();
        std::fs::write(
            u.state().join("config.toml"),
            format!(
                "[networking]\nport_range = [{}, {}]\n\n[global]\nruntime = \"docker\"\n\
                 stop_timeout = \"5s\"\n\n[agents.gemini]\nimage = \"{image}\"\n",
                env.port_base,
                env.port_base + 99
            ),
        )
        .unwrap();
        if u.switch_to.is_some() {
            for p in walkdir(u.dir.path()) {
                chown(&p, Some(UID), Some(UID)).unwrap();
            }
        }
        Some(u)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn project(&self) -> PathBuf {
        self.dir.path().join("gemproj")
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("ai-sessctl")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = match self.switch_to {
            Some(gid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={UID}"),
                    &format!("--regid={UID}"),
                    &format!("--groups={gid}"),
                ])
                .arg(self.bin());
                c
            }
            None => Command::new(self.bin()),
        };
        cmd.args(args)
            .current_dir(self.project())
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("DOCKER_")))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("AI_SESSIONS_HOME", self.state())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ai-sessctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn instance(&self, id: &str) -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(&["list", "--status", "all", "--json"])).unwrap();
        list.as_array()
            .and_then(|a| a.iter().find(|i| i["id"] == id))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = self.run(&["stop", "--all", "--force"]);
        let home = self.state().canonicalize().unwrap_or_else(|_| self.state());
        let label = format!("label=ai.home={}", home.display());
        let ids = docker(&["ps", "-aq", "--filter", &label]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn gemini_reads_the_generated_hooks_and_reports_activity_for_a_normal_user() {
    require_docker!();
    let Some(image) = real_image("gemini") else {
        return;
    };
    let env = Env::new();
    let Some(user) = OtherUser::new(&env, &image) else {
        return;
    };
    user.ok(&["start", "--mode", "gemini", "--detach"]);
    let id = "gemproj-gemini";
    let inst = user.instance(id);
    assert_eq!(inst["status"], "running", "{inst:#}");
    assert_eq!(inst["activity"], "unknown", "{inst:#}");
    let cid = inst["container_id"].as_str().unwrap().to_owned();

    // A second gemini in the instance's container, with its environment
    // and user, given one prompt (and a key, so it gets that far). There
    // is no network: the model call fails, but the prompt's hooks run
    // first.
    let gemini = Command::new("docker")
        .args([
            "exec",
            "-e",
            "GEMINI_API_KEY=not-a-key",
            &cid,
            "timeout",
            "150",
            "gemini",
            "--skip-trust",
            "-p",
            "hello",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hooks say so (node starts slowly on a busy machine); `list`
    // shows it.
    let mut activity = String::new();
    let reported = wait_until(Duration::from_secs(150), || {
        activity = user.instance(id)["activity"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        activity == "working" || activity == "idle"
    });
    // What it said until then (its settings are read before the prompt).
    std::thread::sleep(Duration::from_millis(500));
    let _ = docker(&["exec", &cid, "pkill", "-f", "gemini --skip-trust"]);
    let out = gemini.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in [
        "Security Warning",
        "Invalid configuration",
        "Hook timed out",
        "not a valid JSON",
    ] {
        assert!(!said.contains(bad), "gemini said {bad:?}:\n{said}");
    }
    assert!(
        reported,
        "the prompt's hooks report activity, got {activity:?}; gemini said:\n{said}"
    );
    // Nothing of the user's carries them: not gemini's settings in its
    // state, not the project.
    for f in walkdir(&user.state())
        .into_iter()
        .chain(walkdir(&user.project()))
    {
        if f.starts_with(user.state().join("activity")) || !f.is_file() {
            continue;
        }
        let text = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("ai-sessions-activity"),
            "hooks written into {}",
            f.display()
        );
    }
    user.ok(&["stop", id]);
}
