//! An engine on another machine: a second, real dockerd that shares no
//! network with the client (see remote_support.rs), reached over tcp://
//! with TLS and over ssh://. The client machine's engine is not used.

use crate::common::{git, stderr, stdout, wait_until, Env};
use crate::docker_support::{containers_with_label, docker_config};
use crate::remote_support::{remote_or_skip, RemoteEngine};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

#[test]
fn an_engine_over_tls_is_reached_with_its_certificates_and_refused_without() {
    let Some(remote) = remote_or_skip("an_engine_over_tls_is_reached", false) else {
        return;
    };
    let env = Env::new();
    let tls = remote.tls_env();
    let out = env
        .cmd()
        .envs(tls.iter().map(|(k, v)| (k, v)))
        .args(["doctor"])
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(&remote.tcp_host()),
        "doctor names the engine: {said}"
    );
    assert!(!said.contains("not answering"), "{said}");
    // And what that means for a start there.
    assert!(
        said.contains("another machine")
            && said.contains("clone of the repository")
            && said.contains("ai-sessctl fetch")
            && said.contains("ai-sessctl port"),
        "doctor says what a start there does: {said}"
    );

    let out = env
        .cmd()
        .envs(tls.iter().map(|(k, v)| (k, v)))
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "list over TLS: {}", stderr(&out));

    // The same engine as a docker context holding the certificates (made
    // by the docker CLI, so the store's layout is the real one).
    let config = tempfile::tempdir().unwrap();
    let certs = remote.client_certs();
    let spec = format!(
        "host={},ca={},cert={},key={}",
        remote.tcp_host(),
        certs.join("ca.pem").display(),
        certs.join("cert.pem").display(),
        certs.join("key.pem").display()
    );
    let made = std::process::Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .args(["context", "create", "far", "--docker", &spec])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let out = env
        .cmd()
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_CONTEXT", "far")
        .args(["doctor"])
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains("ok   engine:") && said.contains("context \"far\""),
        "doctor through the context: {said}"
    );

    // Without the client's certificates: a clear error naming the engine
    // and what is missing, not a hang.
    let empty = tempfile::tempdir().unwrap();
    let out = env
        .cmd()
        .env("DOCKER_HOST", remote.tcp_host())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", empty.path())
        .args(["doctor"])
        .output()
        .unwrap();
    let err = stdout(&out);
    assert!(
        err.contains(&remote.tcp_host()) && err.contains("ca.pem"),
        "names the engine and the missing file: {err}"
    );
}

#[test]
fn an_engine_over_ssh_is_reached_through_dial_stdio() {
    let Some(remote) = remote_or_skip("an_engine_over_ssh_is_reached", true) else {
        return;
    };
    let env = Env::new();
    let out = env
        .cmd()
        .env("DOCKER_HOST", remote.ssh_host())
        .env("PATH", remote.ssh_path())
        .args(["doctor"])
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("{said}");
    assert!(
        said.contains(&remote.ssh_host()),
        "doctor names the engine: {said}"
    );
}

/// A repository with a commit and an uncommitted change.
/// `ai-sessctl` in `repo`, reaching the far engine through `via` (its
/// `DOCKER_HOST` and certificates), with `vars` set too.
struct Far<'a> {
    env: &'a Env,
    repo: std::path::PathBuf,
    vars: Vec<(String, String)>,
}

impl<'a> Far<'a> {
    fn new(env: &'a Env, repo: &Path, via: &[(&str, String)], vars: &[(&str, &str)]) -> Self {
        let via = via.iter().map(|(k, v)| (k.to_string(), v.clone()));
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Far {
            env,
            repo: repo.to_path_buf(),
            vars: via.chain(vars).collect(),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.env
            .cmd()
            .current_dir(&self.repo)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }
}

fn repo(env: &Env, name: &str) -> std::path::PathBuf {
    let repo = env.project(name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "one\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join("README"), "one\ntwo\n").unwrap();
    repo
}

/// The agent's container on the far engine, inspected there.
fn far_inspect(remote: &RemoteEngine, cid: &str) -> serde_json::Value {
    let out = remote
        .docker(&["inspect", cid])
        .unwrap_or_else(|e| panic!("no container for {cid} on the far engine: {e}"));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

fn far_volumes(remote: &RemoteEngine, id: &str) -> Vec<String> {
    remote
        .docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=ai.instance={id}"),
        ])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Start → list, logs, stats, health, port → a file the agent wrote comes
/// back with fetch → stop → start again (the work is where it was) → rm,
/// all on the far engine over `via`; nothing of it on the client's engine,
/// nothing of the client's disk mounted.
fn whole_lifecycle(remote: &RemoteEngine, via: &[(&str, String)], over_ssh: bool) {
    remote.load_image(crate::common::test_image_tag()).unwrap();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("far");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let far = Far::new(&env, &repo, via, &[("FAKE_AGENT_LISTEN", "1")]);

    let out = far.run(&["start", "-m", "claude", "-d"]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert!(
        stderr(&out).contains("clone"),
        "says it sends a clone: {}",
        stderr(&out)
    );
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = far_inspect(remote, &cid);
    assert_eq!(c["State"]["Status"], "running", "{c:#}");
    let binds: Vec<&serde_json::Value> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] != "volume")
        .collect();
    assert!(
        binds.is_empty(),
        "nothing of the client is mounted: {binds:?}"
    );
    assert!(
        containers_with_label("ai.instance", &id).is_empty(),
        "the client's engine is not used"
    );

    // A shell that reaches this machine's engine instead: the far agent
    // is not taken for gone, and acting on it says where it runs.
    let far_host = via
        .iter()
        .find(|(k, _)| *k == "DOCKER_HOST")
        .map(|(_, v)| v.clone())
        .unwrap();
    let here = |args: &[&str]| env.cmd().current_dir(&repo).args(args).output().unwrap();
    let listed = here(&["list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(env.instance(&id)["status"], "running");
    assert_eq!(env.instance(&id)["engine"], far_host.as_str());
    for args in [
        vec!["stop", id.as_str()],
        vec!["logs", id.as_str()],
        vec!["fetch", id.as_str()],
        vec!["diff", id.as_str()],
        vec!["rm", "--force", id.as_str()],
    ] {
        let out = here(&args);
        assert!(!out.status.success(), "{args:?} from here");
        let err = stderr(&out);
        assert!(
            err.contains("runs on the engine at") && err.contains(&far_host),
            "{args:?}: {err}"
        );
    }
    assert_eq!(far_inspect(remote, &cid)["State"]["Status"], "running");
    assert_eq!(env.instance(&id)["status"], "running");

    // The agent's hook says it waits, in the box far away: the background
    // watcher brings it home, and a `list` that asks no engine shows it.
    remote
        .docker(&[
            "exec",
            &cid,
            "sh",
            "-c",
            "printf 'waiting\\n' >\"$AI_SESSION_STATUS_FILE\"",
        ])
        .unwrap();
    let needs_you = || {
        let out = env
            .cmd()
            .envs(via.iter().map(|(k, v)| (k, v)))
            .env("AI_SESSIONS_NO_WATCHER", "1")
            .args(["list", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .any(|i| i["id"] == id.as_str() && i["needs_you"] == true)
    };
    assert!(
        wait_until(Duration::from_secs(15), needs_you),
        "the far agent needs you: {}",
        env.instance(&id)
    );

    assert!(far
        .ok(&["list"])
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("running")));
    far.ok(&["logs", &id]);
    far.ok(&["stats", &id]);
    far.ok(&["health", "check", &id]);

    let port = env.instance(&id)["port"].as_u64().unwrap();
    let out = far.run(&["port", &id]);
    if over_ssh {
        assert!(out.status.success(), "port: {}", stderr(&out));
        let addr = stdout(&out).trim().to_owned();
        let mut answer = String::new();
        let reached = wait_until(Duration::from_secs(15), || {
            let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            answer.clear();
            s.read_to_string(&mut answer).is_ok() && answer.trim() == "ok"
        });
        assert!(
            reached,
            "the agent answers through the forward at {addr}: {answer:?}"
        );
        assert_eq!(far.ok(&["port", &id]).trim(), addr, "the forward is reused");
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "ssh -N -L 127.0.0.1:{port}:127.0.0.1:{port} {}",
                remote.ip
            )),
            "says how to reach it: {}",
            stderr(&out)
        );
    }

    // The agent leaves work in its repository; fetch brings it home.
    let top = repo.to_str().unwrap();
    remote
        .docker(&[
            "exec",
            &cid,
            "sh",
            "-c",
            &format!("echo made far away > {top}/far.txt"),
        ])
        .unwrap();
    let fetched = far.ok(&["fetch", &id, "--uncommitted"]);
    assert!(
        fetched.contains(&format!("ai-sessions/{id}-uncommitted")),
        "{fetched}"
    );
    assert_eq!(
        git(
            &repo,
            &[
                "show",
                &format!("refs/remotes/ai-sessions/{id}-uncommitted:far.txt")
            ]
        ),
        "made far away"
    );
    assert!(
        !repo.join("far.txt").exists(),
        "the working copy is untouched"
    );

    far.ok(&["stop", &id]);
    assert!(remote.docker(&["inspect", &cid]).is_err());
    far.ok(&["start", "-m", "claude", "-d"]);
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = remote
        .docker(&["exec", &cid, "cat", &format!("{top}/far.txt")])
        .unwrap();
    assert_eq!(seen.trim(), "made far away", "the work is where it was");

    far.ok(&["rm", "--force", &id]);
    assert!(
        far_volumes(remote, &id).is_empty(),
        "rm removes its volumes"
    );
    assert!(remote.docker(&["inspect", &cid]).is_err());
}

#[test]
fn an_instance_lives_its_whole_life_on_an_engine_over_tls() {
    require_docker!();
    let Some(remote) = remote_or_skip("an_instance_lives_its_whole_life_over_tls", false) else {
        return;
    };
    whole_lifecycle(&remote, &remote.tls_env(), false);
}

#[test]
fn an_instance_lives_its_whole_life_on_an_engine_over_ssh() {
    require_docker!();
    let Some(remote) = remote_or_skip("an_instance_lives_its_whole_life_over_ssh", true) else {
        return;
    };
    let via = [
        ("DOCKER_HOST", remote.ssh_host()),
        ("PATH", remote.ssh_path()),
    ];
    whole_lifecycle(&remote, &via, true);
}

/// The sidecar of the agent's container `cid` on the far engine,
/// inspected there (running).
fn far_sidecar(remote: &RemoteEngine, cid: &str) -> serde_json::Value {
    let name = far_inspect(remote, cid)["Name"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let sidecar = far_inspect(remote, &format!("{name}-egress"));
    assert_eq!(sidecar["State"]["Status"], "running", "{sidecar:#}");
    sidecar
}

/// What the sidecar of `cid` mounts that is no volume (of the client's
/// disk, or the far machine's).
fn far_sidecar_binds(remote: &RemoteEngine, cid: &str) -> Vec<serde_json::Value> {
    far_sidecar(remote, cid)["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] != "volume")
        .cloned()
        .collect()
}

/// `sh -c script` in a container of the far engine: its output, or why not.
fn far_sh(remote: &RemoteEngine, cid: &str, script: &str) -> String {
    remote
        .docker(&["exec", cid, "sh", "-c", script])
        .unwrap_or_else(|e| e)
}

/// A plain GET through the proxy the agent was given (`$http_proxy`).
fn far_get(remote: &RemoteEngine, cid: &str, url: &str) -> String {
    far_sh(
        remote,
        cid,
        &format!(
            "p=${{http_proxy#http://}}; printf 'GET {url} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc -w 5 ${{p%:*}} ${{p##*:}} 2>&1 || echo no-proxy"
        ),
    )
}

/// Two web servers on a network of the far engine, `allowed.test` and
/// `blocked.test`; its subnet.
fn far_destinations(remote: &RemoteEngine, net: &str) -> String {
    remote.docker(&["network", "create", net]).unwrap();
    for (alias, page) in [
        ("allowed.test", "allowed-ok"),
        ("blocked.test", "blocked-ok"),
    ] {
        let script = format!(
            "mkdir -p /tmp/a && echo {page} > /tmp/a/index.html && exec httpd -f -p 80 -h /tmp/a"
        );
        remote
            .docker(&[
                "run",
                "-d",
                "--network",
                net,
                "--network-alias",
                alias,
                crate::common::test_image_tag(),
                "sh",
                "-c",
                &script,
            ])
            .unwrap();
    }
    remote
        .docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            net,
        ])
        .unwrap()
        .trim()
        .to_owned()
}

/// `--egress allowlist` on the far engine over TLS: the agent reaches the
/// allowed host and not another; `net allow` reaches the running proxy
/// there; its refusals come back to `net log`; its sidecar mounts nothing
/// of the client's disk.
#[test]
fn the_egress_proxy_works_on_an_engine_over_tls() {
    require_docker!();
    let Some(remote) = remote_or_skip("the_egress_proxy_works_on_an_engine_over_tls", false) else {
        return;
    };
    egress_proxy(&remote, &remote.tls_env());
}

/// The same over ssh (the sidecar's image built and its files sent
/// through `docker system dial-stdio` on the far side).
#[test]
fn the_egress_proxy_works_on_an_engine_over_ssh() {
    require_docker!();
    let Some(remote) = remote_or_skip("the_egress_proxy_works_on_an_engine_over_ssh", true) else {
        return;
    };
    let via = [
        ("DOCKER_HOST", remote.ssh_host()),
        ("PATH", remote.ssh_path()),
    ];
    egress_proxy(&remote, &via);
}

fn egress_proxy(remote: &RemoteEngine, via: &[(&str, String)]) {
    remote.load_image(crate::common::test_image_tag()).unwrap();
    let env = Env::new();
    let net = format!("ais-far-{}", env.token);
    let subnet = far_destinations(remote, &net);
    env.write_config(&format!(
        "egress = \"allowlist\"\nallow = [\"allowed.test\"]\nproxy_network = \"{net}\"\n\
         allow_private = [\"{subnet}\"]\n\n\
         [global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [agents.claude]\nimage = \"{}\"\nenv_passthrough = {}\n",
        crate::common::test_image_tag(),
        crate::docker_support::PASSTHROUGH
    ));
    let name = env.unique("farnet");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let far = Far::new(&env, &repo, via, &[("FAKE_AGENT_STAY", "1")]);

    far.ok(&["start", "-m", "claude", "-d"]);
    assert_eq!(env.instance(&id)["egress"], "allowlist");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        far_sidecar_binds(remote, &cid),
        Vec::<serde_json::Value>::new(),
        "the proxy mounts nothing of the client"
    );

    let mut seen = String::new();
    let reached = wait_until(Duration::from_secs(20), || {
        seen = far_get(remote, &cid, "http://allowed.test/");
        seen.contains("allowed-ok")
    });
    assert!(reached, "the allowed host: {seen}");
    let b = far_get(remote, &cid, "http://blocked.test/");
    assert!(b.contains("403") && !b.contains("blocked-ok"), "{b}");

    // The refusal, logged by the proxy far away, is in `net log` here.
    // (The proxy logs it a moment after it answered.)
    let mut log = String::new();
    let logged = wait_until(Duration::from_secs(10), || {
        log = far.ok(&["net", "log", &id]);
        log.contains("blocked.test:80")
    });
    assert!(logged, "net log: {log}");

    // A rule added while it runs reaches the proxy there: same container.
    let said = far.ok(&["net", "allow", &id, "blocked.test"]);
    assert!(said.contains("applied"), "{said}");
    let mut seen = String::new();
    let reached = wait_until(Duration::from_secs(10), || {
        seen = far_get(remote, &cid, "http://blocked.test/");
        seen.contains("blocked-ok")
    });
    assert!(reached, "the rule added while it runs: {seen}");
    assert_eq!(env.instance(&id)["container_id"], cid.as_str());

    far.ok(&["rm", "--force", &id]);
    assert!(
        far_volumes(remote, &id).is_empty(),
        "rm removes its volumes"
    );
    let left = remote
        .docker(&["ps", "-aq", "--filter", "label=ai.role=egress-proxy"])
        .unwrap();
    assert!(left.trim().is_empty(), "the proxy outlived its instance");
}

/// A brokered key on the far engine over TLS (a brokered subscription
/// login is refused there, saying why): the box holds a placeholder, its call reaches the API with the real key, `spend` here
/// shows it, a budget set here stops the next call there; the broker
/// mounts nothing of the client's disk.
#[test]
fn the_credential_broker_works_on_an_engine_over_tls() {
    use crate::broker_support::{call_script, unique_secret, Auth};
    use crate::fake_model::{FakeApi, Reply, Usage};
    require_docker!();
    let Some(remote) = remote_or_skip("the_credential_broker_works_on_an_engine_over_tls", false)
    else {
        return;
    };
    remote.load_image(crate::common::test_image_tag()).unwrap();
    let fake = FakeApi::with(Reply {
        usage: Usage {
            input: 1000,
            output: 500,
            cache_creation: 0,
            cache_read: 0,
        },
        ..Reply::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [agents.claude]\nimage = \"{}\"\nenv_passthrough = [\"ANTHROPIC_API_KEY\", \"ANTHROPIC_BASE_URL\", \"FAKE_AGENT_STAY\"]\n\n\
         [agents.claude.credentials]\nupstream = \"http://{}:{}\"\n",
        crate::common::test_image_tag(),
        remote.host_ip,
        fake.port
    ));
    let key = unique_secret("sk-ant-api03-");
    let tls = remote.tls_env();
    let name = env.unique("farkey");
    let repo = repo(&env, &name);
    let id = format!("{name}-claude");
    let far = Far::new(
        &env,
        &repo,
        &tls,
        &[
            ("ANTHROPIC_API_KEY", key.as_str()),
            ("FAKE_AGENT_STAY", "1"),
        ],
    );

    // A subscription login the broker would refresh is a file here: with
    // no key, the start is refused before anything is made, saying so.
    let login = env.state().join("states/claude/.credentials.json");
    std::fs::create_dir_all(login.parent().unwrap()).unwrap();
    let far_future = 4_102_444_800_000_i64;
    std::fs::write(
        &login,
        serde_json::json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-far", "refreshToken": "sk-ant-ort01-far",
            "expiresAt": far_future, "scopes": ["user:inference"], "subscriptionType": "max"}})
        .to_string(),
    )
    .unwrap();
    let out = env
        .cmd()
        .current_dir(&repo)
        .envs(tls.iter().map(|(k, v)| (k, v)))
        .env_remove("ANTHROPIC_API_KEY")
        .args(["start", "-m", "claude", "-d"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("another machine") && stderr(&out).contains("subscription login"),
        "says why: {}",
        stderr(&out)
    );
    assert!(
        remote.docker(&["ps", "-aq"]).unwrap().trim().is_empty(),
        "nothing was made"
    );
    std::fs::remove_file(&login).unwrap();

    far.ok(&["start", "-m", "claude", "-d"]);
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let environ = far_sh(&remote, &cid, "env");
    assert!(!environ.contains(&key), "the box has the key: {environ}");
    assert!(
        environ.contains("ANTHROPIC_API_KEY=sk-ant-api03-aisessions-"),
        "no placeholder: {environ}"
    );
    assert_eq!(
        far_sidecar_binds(&remote, &cid),
        Vec::<serde_json::Value>::new(),
        "the broker mounts nothing of the client"
    );
    let sidecar = far_sidecar(&remote, &cid).to_string();
    assert!(
        !sidecar.contains(&key),
        "the engine's record of the broker holds the key"
    );

    let mut reply = String::new();
    let answered = wait_until(Duration::from_secs(20), || {
        reply = far_sh(&remote, &cid, &call_script(Auth::Key));
        reply.starts_with("HTTP/1.1")
    });
    assert!(answered && reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].x_api_key.as_deref(), Some(key.as_str()));

    // Counted far away, shown here: 1000 in, 500 out.
    let spend: serde_json::Value =
        serde_json::from_str(&far.ok(&["spend", &id, "--json"])).unwrap();
    let row = &spend["instances"][0];
    assert_eq!(row["requests"], 1, "{spend}");
    assert_eq!(row["input_tokens"], 1000, "{spend}");
    assert_eq!(row["output_tokens"], 500, "{spend}");

    // A budget set here reaches the running broker there.
    far.ok(&["config", "set", "--global", "budget.instance_usd", "0.01"]);
    let refused = far_sh(&remote, &cid, &call_script(Auth::Key));
    assert!(
        refused.starts_with("HTTP/1.1 400") && refused.contains("budget.instance_usd"),
        "{refused}"
    );
    assert_eq!(fake.seen().len(), 1, "a refused call reached the API");
    far.ok(&["config", "set", "--global", "budget.instance_usd", "10"]);
    let reply = far_sh(&remote, &cid, &call_script(Auth::Key));
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "a raised budget: {reply}"
    );

    // The agent ends there before anything here read the second call, and
    // its broker with it: the call is counted here all the same.
    let agent = far_inspect(&remote, &cid)["Name"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    // (It ends a few seconds after its agent, once the agent's name no
    // longer resolves there; stopped here so as not to wait on DNS.)
    remote.docker(&["stop", "-t", "1", &cid]).unwrap();
    remote
        .docker(&["stop", "-t", "1", &format!("{agent}-egress")])
        .unwrap();
    let spend: serde_json::Value =
        serde_json::from_str(&far.ok(&["spend", &id, "--json"])).unwrap();
    assert_eq!(spend["instances"][0]["requests"], 2, "{spend}");
    far.ok(&["list"]);
    let spend: serde_json::Value =
        serde_json::from_str(&far.ok(&["spend", &id, "--json"])).unwrap();
    assert_eq!(spend["instances"][0]["requests"], 2, "{spend}");
    far.ok(&["rm", "--force", &id]);
    assert!(
        far_volumes(&remote, &id).is_empty(),
        "rm removes its volumes"
    );
    assert!(
        remote
            .docker(&["inspect", &format!("{agent}-egress")])
            .is_err(),
        "the ended broker goes with its instance"
    );
}
