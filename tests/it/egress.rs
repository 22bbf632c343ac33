//! Egress policy against the real engine. Destinations are busybox httpd
//! containers on a test network with the names `allowed.test` and
//! `blocked.test` (and port 8080 on the allowed one); nothing outside this
//! machine is contacted. Under `allowlist` the agent reaches the allowed
//! one by name through the proxy and nothing else (not the blocked one by
//! name or IP, not another port, not the host); under `none` nothing;
//! under `open` everything; refusals are in `net log` and the event log;
//! `net allow` applies to a running instance; the agent, root or not,
//! cannot lift the policy.

use crate::common;

use crate::common::{stderr, stdout, test_image_tag, Env};
use crate::docker_support::*;
use std::net::TcpListener;
use std::process::Output;

/// A test network with the two destinations; removed when dropped.
struct Dest {
    net: String,
    names: Vec<String>,
    blocked_ip: String,
    allowed_ip: String,
    /// The network's gateway: an address of this host.
    gateway: String,
    /// Its subnet (private: `networking.allow_private` lets the proxy in).
    subnet: String,
}

impl Dest {
    fn new(env: &Env) -> Dest {
        let net = format!("ais-eg-{}", env.token);
        docker_ok(&["network", "create", &net]);
        let mut names = Vec::new();
        let mut ips = Vec::new();
        for (alias, page) in [
            ("allowed.test", "allowed-ok"),
            ("blocked.test", "blocked-ok"),
        ] {
            let name = format!("{net}-{}", &alias[..alias.find('.').unwrap()]);
            let script = format!(
                "mkdir -p /tmp/a /tmp/b && echo {page} > /tmp/a/index.html && echo other-port > /tmp/b/index.html \
                 && httpd -p 8080 -h /tmp/b && exec httpd -f -p 80 -h /tmp/a"
            );
            docker_ok(&[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                &net,
                "--network-alias",
                alias,
                "--label",
                "ai.sessions.test=1",
                test_image_tag(),
                "sh",
                "-c",
                &script,
            ]);
            let ip = docker_ok(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &name,
            ]);
            ips.push(ip.trim().to_owned());
            names.push(name);
        }
        let gateway = docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &net,
        ])
        .trim()
        .to_owned();
        let subnet = docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &net,
        ])
        .trim()
        .to_owned();
        Dest {
            subnet,
            net,
            names,
            allowed_ip: ips[0].clone(),
            blocked_ip: ips[1].clone(),
            gateway,
        }
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        // This test's proxy sidecars are attached too while their instance
        // still runs (the harness removes instances after this).
        let attached = docker(&["ps", "-aq", "--filter", &format!("network={}", self.net)]);
        let attached = stdout(&attached);
        let mut gone: Vec<&str> = self.names.iter().map(String::as_str).collect();
        gone.extend(attached.split_whitespace());
        let _ = docker(&[&["rm", "-f"][..], &gone].concat());
        let _ = docker(&["network", "rm", &self.net]);
    }
}

fn config(env: &Env, dest: &Dest, egress: &str) {
    let private = format!("allow_private = [\"{}\"]\n", dest.subnet);
    config_with(env, dest, egress, &private);
}

/// The config with `networking` lines of the test's own.
fn config_with(env: &Env, dest: &Dest, egress: &str, networking: &str) {
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "egress = \"{egress}\"\nallow = [\"allowed.test\"]\nproxy_network = \"{}\"\n{networking}\n\
         [global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = {PASSTHROUGH}\n",
        dest.net
    ));
}

/// `start --detach` of the project `name` (made if need be), as it went.
fn try_start(env: &Env, name: &str, extra: &[&str]) -> Output {
    env.cmd()
        .current_dir(env.project(name))
        .env("FAKE_AGENT_STAY", "1")
        .args([&["start", "--mode", "claude", "--detach"][..], extra].concat())
        .output()
        .unwrap()
}

fn start(env: &Env, name: &str, extra: &[&str]) -> (String, String) {
    let out = try_start(env, name, extra);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, cid)
}

/// Runs `script` in the agent's container (as its user, or `user`).
fn sh_as(cid: &str, user: Option<&str>, script: &str) -> Output {
    let mut args = vec!["exec"];
    if let Some(u) = user {
        args.extend(["-u", u]);
    }
    args.extend([cid, "sh", "-c", script]);
    docker(&args)
}

fn sh(cid: &str, script: &str) -> String {
    let o = sh_as(cid, None, script);
    format!("{}{}", stdout(&o), stderr(&o))
}

/// A request through the proxy the agent is given (`$http_proxy`).
fn via_proxy(cid: &str, request: &str) -> String {
    sh(
        cid,
        &format!(
            "p=${{http_proxy#http://}}; printf '{request}' | nc -w 5 ${{p%:*}} ${{p##*:}} 2>&1 || echo no-proxy"
        ),
    )
}

fn get(cid: &str, url: &str) -> String {
    via_proxy(cid, &format!("GET {url} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"))
}

fn connect(cid: &str, target: &str) -> String {
    via_proxy(
        cid,
        &format!("CONNECT {target} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n"),
    )
}

/// A direct TCP connection from the agent, no proxy: prints `REACHED`.
fn direct(cid: &str, host: &str, port: u16) -> String {
    sh(
        cid,
        &format!(
            "unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY; \
             printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>&1 | grep -q 'HTTP/1' && echo REACHED || echo refused"
        ),
    )
}

/// A listener on a host address (the test network's gateway): what an
/// agent could use to reach the host.
fn host_listener(addr: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    // Answer like a web server so `direct` sees HTTP/1.
    let l2 = l.try_clone().unwrap();
    std::thread::spawn(move || loop {
        if let Ok((mut s, _)) = l2.accept() {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost\n");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    });
    (l, port)
}

fn refusals(env: &Env, id: &str) -> String {
    env.ok(&["net", "log", id])
}

#[test]
fn allowlist_reaches_the_allowed_host_by_name_and_nothing_else() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let (id, cid) = start(&env, &env.unique("allow"), &[]);
    assert_eq!(env.instance(&id)["egress"], "allowlist");
    let shown = env.ok(&["show", &id]);
    assert!(
        shown.contains("egress:") && shown.contains("allowlist"),
        "{shown}"
    );

    // Allowed by name, through the proxy: plain HTTP and CONNECT.
    assert!(
        get(&cid, "http://allowed.test/").contains("allowed-ok"),
        "{}",
        get(&cid, "http://allowed.test/")
    );
    let c = connect(&cid, "allowed.test:80");
    assert!(
        c.contains("200 Connection established") && c.contains("allowed-ok"),
        "{c}"
    );

    // Not the blocked host, by name or IP; not another port of the allowed one.
    let b = get(&cid, "http://blocked.test/");
    assert!(b.contains("403") && !b.contains("blocked-ok"), "{b}");
    let b = connect(&cid, &format!("{}:80", dest.blocked_ip));
    assert!(b.contains("403") && !b.contains("blocked-ok"), "{b}");
    let p = connect(&cid, "allowed.test:8080");
    assert!(p.contains("403") && !p.contains("other-port"), "{p}");
    let p = get(&cid, &format!("http://{}/", dest.allowed_ip));
    assert!(
        p.contains("403"),
        "the allowed host by IP is not the name: {p}"
    );

    // Around the proxy: no route to either destination, nor to the host,
    // and no name resolves.
    assert_eq!(direct(&cid, &dest.blocked_ip, 80).trim(), "refused");
    assert_eq!(direct(&cid, &dest.allowed_ip, 80).trim(), "refused");
    let (_l, port) = host_listener(&dest.gateway);
    assert_eq!(
        direct(&cid, &dest.gateway, port).trim(),
        "refused",
        "the host is not reachable"
    );
    let ns = sh(
        &cid,
        "nslookup allowed.test >/dev/null 2>&1 && echo RESOLVED || echo no",
    );
    assert_eq!(ns.trim(), "no", "DNS off the internal network");

    // Every refusal is in `net log` and the event log.
    let log = refusals(&env, &id);
    for want in [
        "blocked.test:80",
        &format!("{}:80", dest.blocked_ip),
        "allowed.test:8080",
    ] {
        assert!(log.contains(want), "net log lacks {want}:\n{log}");
    }
    assert!(!log.contains("allowed.test:80 "), "{log}");
    let events = env.ok(&["events", "--json", "--level", "warn"]);
    let ev: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["component"] == "egress")
        .collect();
    assert!(
        ev.iter().any(|e| e["level"] == "WARN"
            && e["metadata"]["host"] == "blocked.test"
            && e["metadata"]["port"] == 80
            && e["metadata"]["instance"] == id.as_str()),
        "{events}"
    );

    // `net allow` applies to the running instance: same container.
    let out = env.ok(&["net", "allow", &id, "blocked.test"]);
    assert!(out.contains("applied"), "{out}");
    assert!(get(&cid, "http://blocked.test/").contains("blocked-ok"));
    assert_eq!(env.instance(&id)["container_id"], cid.as_str());
    let cfg = std::fs::read_to_string(env.state().join(format!("configs/{id}.toml"))).unwrap();
    assert!(cfg.contains("blocked.test"), "{cfg}");
    // A bad rule is refused and nothing changes.
    let out = env.run(&["net", "allow", &id, "not a host"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    // Stopped: the sidecar and the network go with the instance.
    env.ok(&["stop", &id]);
    let home = env.state().canonicalize().unwrap();
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || {
            containers_with_label("ai.home", home.to_str().unwrap()).is_empty()
        }),
        "left: {:?}",
        containers_with_label("ai.home", home.to_str().unwrap())
    );
    let nets = docker_ok(&[
        "network",
        "ls",
        "--filter",
        &format!("label=ai.instance={id}"),
        "-q",
    ]);
    assert!(nets.trim().is_empty(), "network left: {nets}");
}

#[test]
fn the_agent_cannot_lift_the_policy_root_or_not() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let (_id, cid) = start(&env, &env.unique("lift"), &[]);
    for user in [None, Some("0")] {
        let o = sh_as(
            &cid,
            user,
            "ip route replace default dev eth0 2>&1; ip link set eth0 down 2>&1; \
             ip addr add 10.9.9.9/32 dev eth0 2>&1; echo 1 > /proc/sys/net/ipv4/ip_forward 2>&1; true",
        );
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            text.matches("not permitted").count() + text.matches("Read-only").count() >= 3,
            "as {user:?}: {text}"
        );
        // Unsetting the proxy variables leaves no way out.
        assert_eq!(direct(&cid, &dest.blocked_ip, 80).trim(), "refused");
        assert_eq!(direct(&cid, "blocked.test", 80).trim(), "refused");
    }
    // iptables is not there, and could do nothing without NET_ADMIN.
    let caps = sh(&cid, "grep CapEff /proc/self/status");
    assert!(caps.contains("0000000000000000"), "{caps}");
    let c = common::inspect(&cid).unwrap();
    assert!(
        c["HostConfig"]["CapAdd"].is_null(),
        "{}",
        c["HostConfig"]["CapAdd"]
    );
    // The proxy still works afterwards.
    assert!(get(&cid, "http://allowed.test/").contains("allowed-ok"));
}

#[test]
fn none_reaches_nothing_and_open_reaches_everything() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    // The config says open; the flag says none.
    config(&env, &dest, "open");
    let (id, cid) = start(&env, &env.unique("none"), &["--egress", "none"]);
    assert_eq!(env.instance(&id)["egress"], "none");
    assert!(!sh(&cid, "env").contains("_proxy="), "no proxy under none");
    assert!(get(&cid, "http://allowed.test/").contains("no-proxy"));
    let o = sh(
        &cid,
        "nc -w 3 egress-proxy 3128 </dev/null && echo REACHED || echo refused",
    );
    assert!(o.contains("refused"), "{o}");
    assert_eq!(direct(&cid, &dest.allowed_ip, 80).trim(), "refused");
    assert_eq!(direct(&cid, &dest.gateway, 80).trim(), "refused");
    let (_l, port) = host_listener(&dest.gateway);
    assert_eq!(direct(&cid, &dest.gateway, port).trim(), "refused");
    // A restart keeps the flag.
    env.ok(&["restart", &id]);
    assert_eq!(env.instance(&id)["egress"], "none");
    env.ok(&["stop", &id]);

    // Open: no proxy, the host (and so the world) is reachable directly.
    let (id, cid) = start(&env, &env.unique("open"), &[]);
    assert_eq!(env.instance(&id)["egress"], "open");
    assert!(!sh(&cid, "env").contains("_proxy="));
    let gw = sh(
        &cid,
        "ip route | sed -n 's/default via \\([^ ]*\\).*/\\1/p'",
    );
    let (_l, port) = host_listener(gw.trim());
    assert_eq!(direct(&cid, gw.trim(), port).trim(), "REACHED");
    let sidecars = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=ai.role=egress-proxy",
        "--filter",
        &format!("label=ai.egress-for={id}"),
        "-q",
    ]);
    assert!(sidecars.trim().is_empty(), "no sidecar under open");
    env.ok(&["stop", &id]);
}

#[test]
fn a_policy_the_host_runtime_cannot_enforce_is_refused() {
    let env = Env::new();
    let proj = env.project(&env.unique("hostrt"));
    let out = env.run_in(
        &proj,
        &[
            "start",
            "--mode",
            "claude",
            "--detach",
            "--runtime",
            "host",
            "--egress",
            "allowlist",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enforced in containers only"),
        "{}",
        stderr(&out)
    );
    assert!(env.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
}

#[test]
fn an_instance_without_egress_is_healthy_without_a_published_port() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "none");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        cfg.replace("[agents.claude]\n", "[agents.claude]\nlistens = true\n"),
    )
    .unwrap();
    let proj = env.project(&env.unique("nonehealth"));
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_STAY", "1")
        .env("FAKE_AGENT_LISTEN", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let out = env.run(&["health", "check", &id, "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("\"port\""), "{}", stdout(&out));
    env.ok(&["stop", &id]);
}

/// The flag's policy is part of the instance: the agent exiting (killed
/// here) and the next plain start (the `claude` path, no `--egress`) bring
/// it back under `none`, not `open`.
#[test]
fn a_policy_from_the_flag_survives_the_agent_exiting_and_a_rerun() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "open");
    let name = env.unique("rerun");
    let (id, cid) = start(&env, &name, &["--egress", "none"]);
    assert_eq!(env.instance(&id)["egress"], "none");
    docker_ok(&["kill", &cid]);
    let (again, cid) = start(&env, &name, &[]);
    assert_eq!(again, id);
    assert_eq!(env.instance(&id)["egress"], "none", "re-run came back open");
    let (_l, port) = host_listener(&dest.gateway);
    assert_eq!(direct(&cid, &dest.gateway, port).trim(), "refused");
    // An explicit flag still changes it.
    env.ok(&["stop", &id]);
    let (_, _) = start(&env, &name, &["--egress", "open"]);
    assert_eq!(env.instance(&id)["egress"], "open");
    env.ok(&["stop", &id]);
}

/// Asking for a policy while the instance already runs under another
/// (`claude --egress none` in a project whose agent runs `open`) must not
/// attach to it as if the ask were met: the start is refused with both
/// policies named, and the running instance is left as it is.
#[test]
fn a_policy_asked_of_a_running_instance_under_another_is_refused() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "open");
    let name = env.unique("asked");
    let (id, _cid) = start(&env, &name, &[]);
    assert_eq!(env.instance(&id)["egress"], "open");
    let out = env
        .cmd()
        .current_dir(env.projects.path().join(&name))
        .args(["start", "--mode", "claude", "--detach", "--egress", "none"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "--egress none met by an open instance: {err}"
    );
    assert!(
        err.contains("egress = \"open\"") && err.contains("--egress none"),
        "{err}"
    );
    assert_eq!(env.instance(&id)["egress"], "open");
    assert_eq!(env.instance(&id)["status"], "running");
    // The policy it runs under, asked again, is fine.
    let out = env
        .cmd()
        .current_dir(env.projects.path().join(&name))
        .args(["start", "--mode", "claude", "--detach", "--egress", "open"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["stop", &id]);
}

/// Through the real proxy: an allowed name or address that leads to a
/// private network is refused unless `allow_private` lists it, and the
/// engine's gateway (this machine) is refused even when listed.
#[test]
fn the_proxy_refuses_private_addresses_and_the_host_gateway() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    let (_l, port) = host_listener(&dest.gateway);
    let host_rule = format!("allow = [\"allowed.test\", \"{}:{port}\"]\n", dest.gateway);
    // Without allow_private: the allowed name resolves to a private address.
    config_with(&env, &dest, "allowlist", "");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    let cfg = cfg.replace("allow = [\"allowed.test\"]\n", &host_rule);
    std::fs::write(env.state().join("config.toml"), &cfg).unwrap();
    let (id, cid) = start(&env, &env.unique("priv"), &[]);
    let g = get(&cid, "http://allowed.test/");
    assert!(g.contains("403") && g.contains("private address"), "{g}");
    assert!(!g.contains("allowed-ok"), "{g}");
    let h = connect(&cid, &format!("{}:{port}", dest.gateway));
    assert!(
        h.contains("403") && !h.contains("\nhost"),
        "the host through the proxy: {h}"
    );
    assert!(refusals(&env, &id).contains("private address"));
    env.ok(&["stop", &id]);

    // With it: the private network is reachable, the gateway still not.
    let cfg = cfg.replace(
        &host_rule,
        &format!("{host_rule}allow_private = [\"{}\"]\n", dest.subnet),
    );
    std::fs::write(env.state().join("config.toml"), &cfg).unwrap();
    let (id, cid) = start(&env, &env.unique("priv2"), &[]);
    assert!(get(&cid, "http://allowed.test/").contains("allowed-ok"));
    let h = connect(&cid, &format!("{}:{port}", dest.gateway));
    assert!(
        h.contains("403") && h.contains("this machine") && !h.contains("\nhost"),
        "{h}"
    );
    env.ok(&["stop", &id]);
}

/// The sidecar of an instance started with the default `proxy_network`:
/// (container id, its addresses by network).
fn sidecar_of(id: &str) -> (String, Vec<(String, String)>) {
    let sc = docker_ok(&[
        "ps",
        "-q",
        "--filter",
        "label=ai.role=egress-proxy",
        "--filter",
        &format!("label=ai.egress-for={id}"),
    ])
    .trim()
    .to_owned();
    assert!(!sc.is_empty(), "no sidecar for {id}");
    let nets = docker_ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}\n{{end}}",
        &sc,
    ]);
    let nets = nets
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, ip)| (n.to_owned(), ip.to_owned()))
        .collect();
    (sc, nets)
}

/// The proxy is its agent's only: another container on the engine's
/// default bridge (another user's, a `shared` instance) reaches neither
/// the proxy nor the agent's port; no other container joins the sidecar's
/// networks; the proxy listens on the internal network only.
#[test]
fn the_proxy_and_the_agents_port_are_reachable_from_its_agent_only() {
    require_docker!();
    let env = Env::new();
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "egress = \"allowlist\"\nallow = [\"allowed.test\"]\n\n\
         [global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nlistens = true\nenv_passthrough = {PASSTHROUGH}\n"
    ));
    let proj = env.project(&env.unique("reach"));
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_STAY", "1")
        .env("FAKE_AGENT_LISTEN", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = env.instance(&id)["port"].as_u64().unwrap();
    let (sc, nets) = sidecar_of(&id);
    // The agent still has its proxy (the refusal proves it answered).
    assert!(get(&cid, "http://blocked.test/").contains("403"));

    for (net, _) in &nets {
        assert_ne!(net, "bridge", "the sidecar is on the default bridge");
        let members = docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range $k, $v := .Containers}}{{$k}} {{end}}",
            net,
        ]);
        for m in members.split_whitespace() {
            assert!(
                sc.starts_with(&m[..12]) || cid.starts_with(&m[..12]) || m.starts_with(&cid),
                "{net} has another member {m}"
            );
        }
    }
    // What answers is checked, not only that a connection opened: this
    // machine's own network may accept any connection going off it.
    let mut probes = String::new();
    for (_, ip) in &nets {
        probes.push_str(&format!(
            "printf 'GET http://blocked.test/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc -w 3 {ip} 3128 2>&1 | grep -q 'ai-sessions egress' && echo REACHED-PROXY {ip}; \
             nc -w 3 {ip} {port} </dev/null 2>&1 | grep -q '^ok' && echo REACHED-AGENT {ip}; "
        ));
    }
    let own = sh(
        &cid,
        &probes.replace(&format!("{} 3128", nets[0].1), "egress-proxy 3128"),
    );
    assert!(own.contains("REACHED-PROXY"), "the probe itself: {own}");
    let o = docker(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "--label",
        "ai.sessions.test=1",
        test_image_tag(),
        "sh",
        "-c",
        &format!("{probes} true"),
    ]);
    assert!(!stdout(&o).contains("REACHED"), "{} {nets:?}", stdout(&o));
    // From the host, the proxy is not on its outer address either.
    for (net, ip) in &nets {
        let internal = docker_ok(&["network", "inspect", "-f", "{{.Internal}}", net]);
        if internal.trim() == "false" {
            use std::io::{Read, Write};
            let answer = std::net::TcpStream::connect_timeout(
                &format!("{ip}:3128").parse().unwrap(),
                std::time::Duration::from_secs(3),
            )
            .map(|mut c| {
                let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(3)));
                let _ = c.write_all(b"GET http://blocked.test/ HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut b = String::new();
                let _ = c.read_to_string(&mut b);
                b
            })
            .unwrap_or_default();
            assert!(
                !answer.contains("ai-sessions egress"),
                "the proxy answers on {net} {ip}"
            );
        }
    }
    env.ok(&["stop", &id]);
    let left = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=ai.instance={id}"),
    ]);
    assert!(left.trim().is_empty(), "networks left: {left}");
}

/// The sidecar of `id` (running or not), by its labels.
fn sidecar_id(id: &str) -> String {
    docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        "label=ai.role=egress-proxy",
        "--filter",
        &format!("label=ai.egress-for={id}"),
    ])
    .trim()
    .to_owned()
}

/// Held tunnels from inside the box (a bounded number, to a destination on
/// this machine) are capped: past the cap the proxy answers 503 and says so
/// once in the event log, the sidecar keeps running, and once they are
/// closed it serves again.
#[test]
fn held_connections_are_capped_and_the_sidecar_survives() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        cfg.replace(
            "[resources.memory]",
            "[resources.pids]\nlimit = 4096\n\n[resources.memory]",
        ),
    )
    .unwrap();
    let (id, cid) = start(&env, &env.unique("flood"), &[]);
    let sc = sidecar_id(&id);
    // 400 tunnels held open (each: a subshell, sleep and nc).
    let held = sh(
        &cid,
        "i=0; while [ $i -lt 400 ]; do \
           ( { printf 'CONNECT allowed.test:80 HTTP/1.1\\r\\n\\r\\n'; sleep 120; } | nc egress-proxy 3128 >/dev/null 2>&1 & ); \
           i=$((i+1)); done; echo started",
    );
    assert!(held.contains("started"), "{held}");
    let mut last = String::new();
    let capped = common::wait_until(std::time::Duration::from_secs(60), || {
        last = get(&cid, "http://allowed.test/");
        last.contains("503")
    });
    assert!(capped, "no cap: {last}");
    assert!(last.contains("too many connections"), "{last}");
    assert_eq!(container_state(&sc).as_deref(), Some("running"));
    let events = env.ok(&["events", "--json"]);
    assert!(events.contains("connection limit"), "{events}");
    // Closed again: served again.
    sh(&cid, "pkill sleep; killall sleep; true");
    let back = common::wait_until(std::time::Duration::from_secs(60), || {
        get(&cid, "http://allowed.test/").contains("allowed-ok")
    });
    assert!(back, "{}", get(&cid, "http://allowed.test/"));
    assert_eq!(container_state(&sc).as_deref(), Some("running"));
    env.ok(&["stop", &id]);
}

/// A sidecar that is paused, or gone (killed, out of memory), makes the
/// instance unhealthy with an event saying why; a heal brings it back.
#[test]
fn a_dead_or_paused_sidecar_is_unhealthy_logged_and_healed() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let (id, cid) = start(&env, &env.unique("sidecar"), &[]);
    let health = |env: &Env| {
        let out = env.run(&["health", "check", &id]);
        format!("{}{}", stdout(&out), stderr(&out))
    };
    assert!(!health(&env).contains("unhealthy"), "{}", health(&env));
    for how in ["pause", "kill"] {
        let sc = sidecar_id(&id);
        docker_ok(&[how, &sc]);
        let h = health(&env);
        assert!(
            h.contains("unhealthy") && h.contains("egress-proxy"),
            "{how}: {h}"
        );
        let events = env.ok(&["events", "--json"]);
        assert!(events.contains("egress proxy"), "{how}: {events}");
        env.ok(&["heal", &id]);
        let cid2 = env.instance(&id)["container_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            container_state(&sidecar_id(&id)).as_deref(),
            Some("running")
        );
        assert!(
            !health(&env).contains("unhealthy"),
            "{how}: {}",
            health(&env)
        );
        assert!(get(&cid2, "http://allowed.test/").contains("allowed-ok"));
        let _ = &cid;
    }
    env.ok(&["stop", &id]);
}

/// An image of the sidecar kind built FROM scratch with `labels`, tagged
/// `tag`.
fn fake_sidecar_image(tag: &str, labels: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut df = String::from("FROM scratch\n");
    for (k, v) in labels {
        df.push_str(&format!("LABEL {k}=\"{v}\"\n"));
    }
    std::fs::write(dir.path().join("Dockerfile"), df).unwrap();
    let o = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A new proxy binary builds a new sidecar image and prunes this home's
/// older ones; another home's images (of its own binary) stay.
#[test]
fn sidecar_image_pruning_stays_in_its_own_home() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let tok: String = env
        .token
        .bytes()
        .map(|b| format!("{:02x}", b))
        .collect::<String>()
        .chars()
        .take(16)
        .collect();
    let theirs = format!("ai-sessions-egress:{tok:0>16}");
    fake_sidecar_image(
        &theirs,
        &[
            ("ai.managed-by", "ai-sessctl"),
            ("ai.home", "/another/home"),
        ],
    );
    let old = format!(
        "ai-sessions-egress:{:0>16}",
        tok.chars().rev().collect::<String>()
    );
    fake_sidecar_image(
        &old,
        &[
            ("ai.managed-by", "ai-sessctl"),
            ("ai.home", &common::home_label(env.state())),
        ],
    );
    // A binary of its own, so that this start builds (and prunes).
    let bins = tempfile::tempdir().unwrap();
    let bin = bins.path().join("ai-sessctl");
    std::fs::copy(env!("CARGO_BIN_EXE_ai-sessctl"), &bin).unwrap();
    let proj = env.project(&env.unique("prune"));
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_STAY", "1")
        .env("AI_SESSIONS_PROXY_BINARY", &bin)
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let mine = docker_ok(&["inspect", "-f", "{{.Config.Image}}", &sidecar_id(&id)])
        .trim()
        .to_owned();
    assert!(mine.starts_with("ai-sessions-egress:"), "{mine}");
    let left = docker(&["image", "inspect", &theirs]);
    let _ = docker(&["rmi", &theirs]);
    assert!(left.status.success(), "another home's image was removed");
    let old_left = docker(&["image", "inspect", &old]);
    let _ = docker(&["rmi", &old]);
    assert!(!old_left.status.success(), "this home's old image stays");
    env.ok(&["stop", &id]);
    let _ = docker(&["rmi", &mine]);
}

/// IPv6 link-local: the host's address on the agent's network (the
/// bridge's `fe80::`) must not be reachable from an agent under `none` or
/// `allowlist` (the host listens on every address, as many servers do).
#[test]
fn ipv6_link_local_does_not_reach_the_host() {
    require_docker!();
    if std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|s| s.trim() == "1")
        .unwrap_or(true)
    {
        eprintln!("\n*** SKIPPED: IPv6 is off on this host ***\n");
        return;
    }
    let env = Env::new();
    let dest = Dest::new(&env);
    let l = TcpListener::bind("[::]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            use std::io::Write;
            if let Ok(mut s) = s {
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost\n");
            }
        }
    });
    for egress in ["none", "allowlist"] {
        config(&env, &dest, egress);
        let (id, cid) = start(&env, &env.unique(egress), &[]);
        // Every link-local address of the host's bridges, tried from the box.
        let addrs = std::process::Command::new("ip")
            .args(["-6", "-o", "addr", "show", "scope", "link"])
            .output()
            .unwrap();
        let mut tries = String::new();
        for line in stdout(&addrs).lines() {
            let mut w = line.split_whitespace();
            let (Some(_), Some(dev)) = (w.next(), w.next()) else {
                continue;
            };
            if !dev.starts_with("br-") {
                continue;
            }
            if let Some(a) = line.split_whitespace().skip_while(|x| *x != "inet6").nth(1) {
                let a = a.split('/').next().unwrap();
                tries.push_str(&format!(
                    "for i in $(ls /sys/class/net); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {a}%$i {port} 2>/dev/null | grep -q host && echo REACHED {a}%$i; done; "
                ));
            }
        }
        assert!(!tries.is_empty(), "no bridge with a link-local address");
        let o = sh(&cid, &tries);
        assert!(!o.contains("REACHED"), "{egress}: {o}");
        env.ok(&["stop", &id]);
    }
}

/// `health watch` heals a killed sidecar by itself: the instance is
/// restarted with a new proxy, which serves.
#[test]
fn health_watch_brings_a_killed_sidecar_back() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        format!("{cfg}\n[health]\ncheck_interval = \"1s\"\nretry_delay = \"1s\"\n"),
    )
    .unwrap();
    let (id, _) = start(&env, &env.unique("watchsc"), &[]);
    let old = sidecar_id(&id);
    let mut watch = env
        .cmd()
        .args(["health", "watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    docker_ok(&["kill", &old]);
    let healed = common::wait_until(std::time::Duration::from_secs(60), || {
        let now = sidecar_id(&id);
        let inst = env.instance(&id);
        !now.is_empty()
            && !old.starts_with(&now)
            && container_state(&now).as_deref() == Some("running")
            && inst["status"] == "running"
            && inst["container_id"].is_string()
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(healed, "the sidecar was not brought back");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || get(&cid, "http://allowed.test/").contains("allowed-ok")
    ));
    let events = env.ok(&["events", "--json"]);
    assert!(events.contains("egress proxy down"), "{events}");
    env.ok(&["stop", &id]);
}

/// The machine's own addresses (not only the engine's gateway) are never a
/// destination, even where `allow_private` would let the range through.
#[test]
fn the_proxy_refuses_the_machines_own_addresses() {
    require_docker!();
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let route = stdout(&route);
    let Some(src) = route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .map(str::to_owned)
    else {
        eprintln!("\n*** SKIPPED: no default route here ***\n");
        return;
    };
    let env = Env::new();
    let dest = Dest::new(&env);
    let (_l, port) = host_listener(&src);
    config_with(
        &env,
        &dest,
        "allowlist",
        &format!("allow_private = [\"{}\", \"{src}/32\"]\n", dest.subnet),
    );
    let cfg = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        cfg.replace(
            "allow = [\"allowed.test\"]",
            &format!("allow = [\"allowed.test\", \"{src}:{port}\"]"),
        ),
    )
    .unwrap();
    let (id, cid) = start(&env, &env.unique("self"), &[]);
    assert!(get(&cid, "http://allowed.test/").contains("allowed-ok"));
    let h = connect(&cid, &format!("{src}:{port}"));
    assert!(
        h.contains("403") && h.contains("this machine"),
        "{src}: {h}"
    );
    env.ok(&["stop", &id]);
}

/// The proxy also writes each refusal it logs to its stderr, which the
/// engine keeps in its own log of the sidecar: unbounded by default, so a
/// box refused for weeks would fill the engine's disk there. That log is
/// capped, as the agent's is.
#[test]
fn the_sidecars_engine_log_is_capped() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let (id, cid) = start(&env, &env.unique("sclog"), &[]);
    let refused = connect(&cid, "blocked.test:443");
    assert!(refused.contains("403"), "{refused}");
    let sc = sidecar_id(&id);
    let logged = common::wait_until(std::time::Duration::from_secs(10), || {
        stderr(&docker(&["logs", &sc])).contains("blocked.test")
    });
    assert!(logged, "the refusal is in the sidecar's engine log");
    let log = docker_ok(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &sc]);
    let log: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
    assert_eq!(log["Type"], "json-file", "{log}");
    assert!(log["Config"]["max-size"].is_string(), "not capped: {log}");
    env.ok(&["stop", &id]);
}

/// A network of the instance's name that someone else made (internal, but
/// with the host's address on it and none of our labels) is not taken for
/// the instance's own: the start is refused, nothing runs.
#[test]
fn a_planted_internal_network_of_the_instances_name_is_not_reused() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let name = env.unique("planted");
    let (id, cid) = start(&env, &name, &[]);
    let container = common::inspect(&cid).unwrap()["Name"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    env.ok(&["stop", &id]);
    let planted = docker_ok(&["network", "create", "--internal", &container])
        .trim()
        .to_owned();
    let out = try_start(&env, &name, &[]);
    // By id: on engines before API 1.44 the start made a second network
    // of the name, which makes the name ambiguous.
    let _ = docker(&["network", "rm", &planted]);
    assert!(
        !out.status.success(),
        "started on a network it did not make: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains(&container), "{}", stderr(&out));
    assert_ne!(env.instance(&id)["status"], "running");
}

/// A proxy sidecar of an earlier start still running under the name the
/// next start's sidecar takes (a start killed mid-way, a stop that did not
/// finish) is replaced: the start succeeds and the proxy it made answers.
#[test]
fn a_running_sidecar_left_by_an_earlier_start_is_replaced() {
    require_docker!();
    let env = Env::new();
    let dest = Dest::new(&env);
    config(&env, &dest, "allowlist");
    let name = env.unique("leftover");
    let (id, cid) = start(&env, &name, &[]);
    let container = common::inspect(&cid).unwrap()["Name"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    env.ok(&["stop", &id]);
    let sidecar = format!("{container}-egress");
    let planted = docker_ok(&[
        "run",
        "-d",
        "--name",
        &sidecar,
        test_image_tag(),
        "sleep",
        "600",
    ])
    .trim()
    .to_owned();
    let out = try_start(&env, &name, &[]);
    let left = common::inspect(&planted).is_some();
    let _ = docker(&["rm", "-f", &planted]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert!(!left, "the leftover was removed");
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(get(&cid, "http://allowed.test/").contains("allowed-ok"));
}
