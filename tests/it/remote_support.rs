//! A second, real container engine that shares no network with the client:
//! a `dockerd` of the test's own, in a network namespace of its own (a veth
//! pair is the only way in), with its own data root, reached over
//! `tcp://` with TLS certificates made here, and over `ssh://` through an
//! `sshd` in the same namespace (`docker system dial-stdio` on the far
//! side). Everything is torn down on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct RemoteEngine {
    /// Everything of this engine: data root, certificates, sockets, logs.
    pub dir: tempfile::TempDir,
    netns: String,
    host_if: String,
    /// The engine's address on its side of the veth pair.
    pub ip: String,
    /// This machine's address on its side: what the far engine's
    /// containers reach this machine at (a server of the test's listens
    /// on all addresses).
    pub host_ip: String,
    dockerd: Child,
    sshd: Option<Child>,
}

fn run(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sh(what: &str, script: &str) -> Result<String, String> {
    run(what, Command::new("sh").args(["-ec", script]))
}

/// Why this machine cannot run a second engine, if it cannot.
fn unable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (a network namespace and a dockerd need it)".into());
    }
    for tool in ["dockerd", "ip", "nsenter", "openssl"] {
        if which(tool).is_none() {
            return Some(format!("no {tool}"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// Loud skip, or a failure under AI_SESSIONS_REQUIRE_DOCKER=1 (CI).
pub fn remote_or_skip(test: &str, ssh: bool) -> Option<RemoteEngine> {
    let why = unable().or_else(|| {
        (ssh && !Path::new("/usr/sbin/sshd").is_file())
            .then(|| "no /usr/sbin/sshd (openssh-server)".to_owned())
    });
    let result = match why {
        Some(why) => Err(why),
        None => RemoteEngine::start(ssh),
    };
    match result {
        Ok(r) => Some(r),
        Err(why) if std::env::var("AI_SESSIONS_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("{test}: cannot run a second engine: {why}")
        }
        Err(why) => {
            eprintln!("\n*** SKIPPED {test}: cannot run a second engine: {why} ***\n");
            None
        }
    }
}

impl RemoteEngine {
    fn start(with_ssh: bool) -> Result<Self, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = (std::process::id() % 100_000) * 10 + n % 10;
        // Short names: interface names are at most 15 bytes.
        let netns = format!("aisr{tag}");
        let host_if = format!("aish{tag}");
        let far_if = format!("aisn{tag}");
        // A /30 of 10.231.0.0/16 of its own (unique per process and engine).
        let slot = (tag % 16_000) * 4;
        let (hi, lo) = (slot / 256, slot % 256);
        let host_ip = format!("10.231.{hi}.{}", lo + 1);
        let ip = format!("10.231.{hi}.{}", lo + 2);
        // Short: a unix socket path has room for ~107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("aisr")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let d = dir.path().display().to_string();
        let _ = sh(
            "old namespace",
            &format!("ip netns del {netns} 2>/dev/null || true"),
        );
        sh(
            "network namespace",
            &format!(
                "ip netns add {netns}
                 ip link add {host_if} type veth peer name {far_if}
                 ip link set {far_if} netns {netns}
                 ip addr add {host_ip}/30 dev {host_if}
                 ip link set {host_if} up
                 ip netns exec {netns} ip addr add {ip}/30 dev {far_if}
                 ip netns exec {netns} ip link set {far_if} up
                 ip netns exec {netns} ip link set lo up"
            ),
        )?;
        // The engine's CA, its certificate (for its address) and the
        // client's, as `dockerd --tlsverify` wants them.
        sh(
            "certificates",
            &format!(
                "cd {d}; mkdir -p client; exec 2>/dev/null
                 openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ais-ca -keyout ca-key.pem -out ca.pem
                 openssl req -newkey rsa:2048 -nodes -subj /CN={ip} -keyout server-key.pem -out server.csr
                 printf 'subjectAltName=IP:{ip}\\nextendedKeyUsage=serverAuth\\n' > server.ext
                 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server.pem
                 openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client/key.pem -out client.csr
                 printf 'extendedKeyUsage=clientAuth\\n' > client.ext
                 openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out client/cert.pem
                 cp ca.pem client/ca.pem"
            ),
        )?;
        // nsenter, not `ip netns exec`: that one remounts /sys, hiding the
        // cgroup mounts dockerd needs.
        let log =
            std::fs::File::create(dir.path().join("dockerd.log")).map_err(|e| e.to_string())?;
        let dockerd = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg("dockerd")
            .args(["--data-root", &format!("{d}/data")])
            .args(["--exec-root", &format!("{d}/exec")])
            .args(["--pidfile", &format!("{d}/docker.pid")])
            .args(["-H", &format!("unix://{d}/docker.sock")])
            .args(["-H", &format!("tcp://{ip}:2376")])
            .args(["--tlsverify", "--tlscacert", &format!("{d}/ca.pem")])
            .args(["--tlscert", &format!("{d}/server.pem")])
            .args(["--tlskey", &format!("{d}/server-key.pem")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        let mut engine = RemoteEngine {
            dir,
            netns,
            host_if,
            ip,
            host_ip,
            dockerd,
            sshd: None,
        };
        let up = crate::common::wait_until(Duration::from_secs(60), || {
            engine
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
        });
        if !up {
            return Err(format!(
                "the second dockerd did not come up: {}",
                engine.log()
            ));
        }
        if with_ssh {
            engine.start_sshd()?;
        }
        Ok(engine)
    }

    /// An sshd in the namespace that lets in one key of the test's, with
    /// DOCKER_HOST naming this engine's socket (so `docker system
    /// dial-stdio` on the far side reaches it).
    fn start_sshd(&mut self) -> Result<(), String> {
        let d = self.dir.path().display().to_string();
        let ip = &self.ip;
        sh(
            "ssh keys",
            &format!(
                "cd {d}; mkdir -p ssh; chmod 700 ssh
                 ssh-keygen -q -t ed25519 -N '' -f ssh/host_key
                 ssh-keygen -q -t ed25519 -N '' -f ssh/id
                 printf 'environment=\"DOCKER_HOST=unix://{d}/docker.sock\",environment=\"PATH=%s\" %s\\n' \"$PATH\" \"$(cat ssh/id.pub)\" > ssh/authorized_keys
                 chmod 600 ssh/authorized_keys
                 cat > ssh/sshd_config <<EOF
ListenAddress {ip}:22
HostKey {d}/ssh/host_key
AuthorizedKeysFile {d}/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitUserEnvironment yes
StrictModes no
UsePAM no
PidFile {d}/ssh/sshd.pid
EOF
                 cat > ssh/config <<EOF
Host {ip}
  User root
  IdentityFile {d}/ssh/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
                 mkdir -p bin
                 printf '#!/bin/sh\\nexec %s -F {d}/ssh/config \"$@\"\\n' \"$(command -v ssh)\" > bin/ssh
                 chmod 755 bin/ssh
                 mkdir -p /run/sshd"
            ),
        )?;
        let log =
            std::fs::File::create(self.dir.path().join("sshd.log")).map_err(|e| e.to_string())?;
        let sshd = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args([
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                &format!("{d}/ssh/sshd_config"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("sshd: {e}"))?;
        self.sshd = Some(sshd);
        let path = self.ssh_path();
        let up = crate::common::wait_until(Duration::from_secs(20), || {
            Command::new("ssh")
                .env("PATH", &path)
                .args([ip.as_str(), "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !up {
            let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
            return Err(format!("the test's sshd did not let us in: {log}"));
        }
        Ok(())
    }

    /// The engine's socket, on this machine's filesystem: for the test's
    /// own setup (loading images), never for the code under test.
    pub fn socket(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.path().display())
    }

    /// `tcp://IP:2376`, to be used with `tls_env`.
    pub fn tcp_host(&self) -> String {
        format!("tcp://{}:2376", self.ip)
    }

    /// The client's certificates (ca.pem, cert.pem, key.pem).
    pub fn client_certs(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// DOCKER_HOST and friends for a client over TLS.
    pub fn tls_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DOCKER_HOST", self.tcp_host()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            (
                "DOCKER_CERT_PATH",
                self.client_certs().display().to_string(),
            ),
        ]
    }

    /// `ssh://root@IP`, reached with a PATH whose `ssh` knows the key.
    pub fn ssh_host(&self) -> String {
        format!("ssh://root@{}", self.ip)
    }

    /// PATH with the test's `ssh` wrapper (its config and key) first.
    pub fn ssh_path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The docker CLI against this engine (its own socket).
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        run(
            &format!("docker {args:?}"),
            Command::new("docker")
                .arg("-H")
                .arg(self.socket())
                .args(args),
        )
    }

    /// Copies an image of the client machine's engine into this one (no
    /// registry to pull from).
    pub fn load_image(&self, image: &str) -> Result<(), String> {
        sh(
            "image copy",
            &format!(
                "docker save {image} | docker -H {} load -q >/dev/null",
                self.socket()
            ),
        )
        .map(drop)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log"))
            .map(|l| l.lines().rev().take(30).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        if let Some(mut s) = self.sshd.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Its containers go with it; then nothing of it stays mounted.
        let _ = sh(
            "containers",
            &format!("docker -H unix://{d}/docker.sock rm -f $(docker -H unix://{d}/docker.sock ps -aq) >/dev/null 2>&1 || true"),
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.dockerd.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let gone = crate::common::wait_until(Duration::from_secs(20), || {
            matches!(self.dockerd.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.dockerd.kill();
            let _ = self.dockerd.wait();
        }
        let _ = sh(
            "teardown",
            &format!(
                "grep -o ' {d}/[^ ]*' /proc/mounts | sort -r | while read -r m; do umount -l \"$m\"; done
                 ip link del {} 2>/dev/null || true
                 ip netns del {} 2>/dev/null || true",
                self.host_if, self.netns
            ),
        );
    }
}
