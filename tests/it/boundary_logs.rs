//! The event log, the proxy's log and what reaches a terminal, with the box
//! as the attacker: a real instance under `allowlist`, its real proxy
//! sidecar, and requests sent from inside the box. The sidecar can write
//! only a directory of its own (whatever it plants there is never followed,
//! and a lock held on it never waits host commands); strings from the box
//! reach a terminal escaped, in text and in JSON; a flood of refusals
//! leaves the logs under their caps with a count of what was dropped.

use crate::api_support;
use crate::common;

use crate::common::{stderr, stdout, test_image_tag, Env};
use crate::docker_support::*;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A network the proxy reaches out on; removed when dropped.
struct Net(String);

impl Net {
    fn new(env: &Env) -> Net {
        let net = format!("ais-bl-{}", env.token);
        docker_ok(&["network", "create", &net]);
        Net(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let attached = docker(&["ps", "-aq", "--filter", &format!("network={}", self.0)]);
        let ids: Vec<String> = stdout(&attached)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["network", "rm", &self.0]);
    }
}

fn allowlist_env() -> (Env, Net) {
    let env = Env::new();
    let net = Net::new(&env);
    let agent_image = test_image_tag();
    env.write_config(&format!(
        "egress = \"allowlist\"\nallow = [\"allowed.test\"]\nproxy_network = \"{}\"\n\n\
         [global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"128Mi\"\n\n\
         [agents.claude]\nimage = \"{agent_image}\"\nenv_passthrough = {PASSTHROUGH}\n",
        net.0
    ));
    (env, net)
}

fn start(env: &Env, name: &str) -> (String, String) {
    let proj = env.project(name);
    let out = env
        .cmd()
        .current_dir(&proj)
        .env("FAKE_AGENT_STAY", "1")
        .args(["start", "--mode", "claude", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, cid)
}

/// Runs `script` in the agent's container (root in its box).
fn in_box(cid: &str, script: &str) -> String {
    let o = docker(&["exec", "-u", "0", cid, "sh", "-c", script]);
    format!("{}{}", stdout(&o), stderr(&o))
}

/// `request` (printf format) sent to the proxy from inside the box.
fn via_proxy(cid: &str, request: &str) -> String {
    in_box(
        cid,
        &format!(
            "p=${{http_proxy#http://}}; printf '{request}' | nc -w 5 ${{p%:*}} ${{p##*:}} 2>&1 || echo no-proxy"
        ),
    )
}

fn sidecar_of(id: &str) -> String {
    let found = containers_with_label("ai.egress-for", id);
    assert_eq!(found.len(), 1, "one sidecar for {id}: {found:?}");
    found[0].clone()
}

/// `(source, destination, read-write)` of each mount of `container`.
fn mounts(container: &str) -> Vec<(PathBuf, String, bool)> {
    let c = common::inspect(container).unwrap();
    c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                PathBuf::from(m["Source"].as_str().unwrap()),
                m["Destination"].as_str().unwrap().to_owned(),
                m["RW"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Runs a command with a bound: `None` when it had to be killed.
fn run_bounded(env: &Env, args: &[&str], bound: Duration) -> Option<std::process::Output> {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < bound {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Every file under `dir` (not following links), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn refused_once(cid: &str) {
    let r = via_proxy(cid, "CONNECT blocked.test:443 HTTP/1.1\\r\\n\\r\\n");
    assert!(r.contains("403"), "{r}");
}

#[test]
fn the_sidecar_writes_only_a_dir_of_its_own_and_nothing_there_is_followed_or_waited_on() {
    require_docker!();
    let (env, _net) = allowlist_env();
    let (id, cid) = start(&env, &env.unique("mounts"));
    refused_once(&cid);
    let sidecar = sidecar_of(&id);
    let logs = env.state().canonicalize().unwrap().join("logs");

    // Only its rules (read-only) and a directory of its own (read-write).
    let mounts = mounts(&sidecar);
    let writable: Vec<&PathBuf> = mounts.iter().filter(|m| m.2).map(|m| &m.0).collect();
    assert_eq!(writable.len(), 1, "{mounts:?}");
    let own = writable[0].clone();
    assert_ne!(own, logs, "not the whole logs dir: {mounts:?}");
    assert!(
        own.ends_with(&id) && !logs.starts_with(&own),
        "a dir of its own: {own:?}"
    );
    for (src, _, rw) in &mounts {
        assert!(
            *rw || src.ends_with(&id),
            "only its own rules read-only: {mounts:?}"
        );
    }

    // What the box (through its proxy) can write: locked by the box, and
    // symlinks to the user's files planted in it under every name we use.
    let canary = env.projects.path().join("canary");
    std::fs::write(&canary, "canary\n").unwrap();
    let secret = env.projects.path().join("credentials.json");
    std::fs::write(&secret, "{\"token\":\"SECRET-TOKEN\"}\n").unwrap();
    let mut held = Vec::new();
    for f in files_under(&own) {
        let file = std::fs::OpenOptions::new().read(true).open(&f).unwrap();
        // SAFETY: flock on an fd we own.
        assert_eq!(
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) },
            0,
            "{f:?}"
        );
        held.push(file);
    }
    assert!(!held.is_empty(), "the proxy logged into {own:?}");
    let out = run_bounded(
        &env,
        &["net", "allow", &id, "one.test"],
        Duration::from_secs(30),
    )
    .expect("`net allow` must not wait on a lock the box holds");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_bounded(&env, &["events"], Duration::from_secs(30))
        .expect("`events` must not wait on a lock the box holds");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_bounded(&env, &["net", "log", &id], Duration::from_secs(30))
        .expect("`net log` must not wait on a lock the box holds");
    assert!(stdout(&out).contains("blocked.test"), "{}", stdout(&out));

    for name in [
        "session-manager.log".to_owned(),
        format!("{id}.log"),
        "egress.log".to_owned(),
        "egress.log.1".to_owned(),
    ] {
        let p = own.join(&name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&canary, &p).unwrap();
    }
    refused_once(&cid);
    env.ok(&["net", "allow", &id, "two.test"]);
    let ev = env.ok(&["events"]);
    let nl = env.ok(&["net", "log", &id]);
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        "canary\n",
        "nothing written through a planted link"
    );
    assert!(
        !ev.contains("canary") && !nl.contains("canary"),
        "{ev}\n{nl}"
    );
    // The box's own dir holds no link of ours, and the proxy wrote none.
    for f in files_under(&own) {
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert!(
            !m.file_type().is_symlink() || std::fs::read_link(&f).unwrap() == canary,
            "{f:?}"
        );
    }

    // Our own files under logs/: never opened through a link either.
    let out = run_bounded(&env, &["stop", &id], Duration::from_secs(60))
        .expect("`stop` must not wait on a lock the box holds");
    assert!(out.status.success(), "{}", stderr(&out));
    drop(held);
    let saved = logs.join(format!("{id}.log"));
    let _ = std::fs::remove_file(&saved);
    std::os::unix::fs::symlink(&secret, &saved).unwrap();
    let out = env.run(&["logs", &id]);
    assert!(
        !stdout(&out).contains("SECRET-TOKEN") && !stderr(&out).contains("SECRET-TOKEN"),
        "`logs` read through a link: {}",
        stdout(&out)
    );
    let event_log = logs.join("session-manager.log");
    std::fs::remove_file(&event_log).unwrap();
    std::os::unix::fs::symlink(&canary, &event_log).unwrap();
    let _ = env.run(&["net", "allow", &id, "three.test"]);
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "canary\n");
}

/// A child killed when dropped (also when the test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes that drive a terminal: C0 (ESC, BEL), C1 (U+009B) and the
/// bidirectional override U+202E.
fn drives_a_terminal(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[test]
fn escapes_sent_by_the_box_reach_no_terminal() {
    require_docker!();
    let (env, _net) = allowlist_env();
    let (id, cid) = start(&env, &env.unique("esc"));
    // Title, clipboard, clear screen, C1 CSI and a right-to-left override.
    let host =
        "x\\033]0;PWNED\\007\\033]52;c;cHduZWQ=\\007\\033[2J\\302\\2332J\\342\\200\\256gpj.exe";
    let r = via_proxy(&cid, &format!("CONNECT {host}:443 HTTP/1.1\\r\\n\\r\\n"));
    assert!(r.contains("403"), "{r}");

    let mut follow = Killed(
        env.cmd()
            .args(["events", "--follow"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let follow_out = follow.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        let _ = follow_out.take(1 << 20).read_to_end(&mut buf);
        buf
    });
    for args in [
        vec!["net", "log", &id],
        vec!["net", "log"],
        vec!["net", "log", "--json"],
        vec!["events"],
        vec!["events", "--json"],
        vec!["events", "--level", "warn"],
    ] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("PWNED"), "{args:?} shows the request: {text}");
        assert_eq!(drives_a_terminal(&text), None, "{args:?}: {text:?}");
        if args.contains(&"--json") {
            for line in text.lines().filter(|l| l.contains("PWNED")) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(
                    v["metadata"]["host"]
                        .as_str()
                        .is_some_and(|h| h.contains("\u{1b}]0;PWNED")),
                    "JSON keeps the value: {line}"
                );
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(follow);
    let followed = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(followed.contains("PWNED"), "{followed}");
    assert_eq!(drives_a_terminal(&followed), None, "{followed:?}");
}

/// Total size of every file under the state home's `logs/`.
fn logs_size(env: &Env) -> u64 {
    files_under(&env.state().join("logs"))
        .iter()
        .filter_map(|f| std::fs::symlink_metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn timed(env: &Env, args: &[&str]) -> Duration {
    let t = Instant::now();
    env.ok(args);
    t.elapsed()
}

#[test]
fn a_flood_of_refusals_from_the_box_stays_under_the_caps_and_is_counted() {
    require_docker!();
    let (env, _net) = allowlist_env();
    let (id, cid) = start(&env, &env.unique("flood"));
    refused_once(&cid);
    let before = timed(&env, &["list"]);
    let allow_before = timed(&env, &["net", "allow", &id, "one.test"]);

    // Four loops of refused CONNECTs with 16 KB host names, for 20 s.
    let started = Instant::now();
    in_box(
        &cid,
        "p=${http_proxy#http://}; h=$(head -c 16000 /dev/zero | tr '\\0' a); end=$(($(date +%s)+20)); \
         for w in 1 2 3 4; do ( while [ $(date +%s) -lt $end ]; do \
           printf 'CONNECT %s:443 HTTP/1.1\\r\\n\\r\\n' $h | nc -w 2 ${p%:*} ${p##*:} >/dev/null 2>&1; \
         done ) & done; wait",
    );
    let flood = started.elapsed();

    // The count of what was dropped is logged (within a few seconds).
    let mut dropped = 0u64;
    common::wait_until(Duration::from_secs(30), || {
        let ev = env.ok(&["events", "--json"]);
        dropped = ev
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["metadata"]["instance"] == id.as_str())
            .filter_map(|e| e["metadata"]["dropped"].as_u64())
            .sum();
        dropped > 0
    });
    let size = logs_size(&env);
    let after = timed(&env, &["list"]);
    let allow_after = timed(&env, &["net", "allow", &id, "two.test"]);
    let longest = env
        .ok(&["events", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["metadata"]["host"].as_str().map(str::len))
        .max()
        .unwrap_or(0);
    eprintln!(
        "flood of {flood:?} from the box: {dropped} refusals not logged, logs/ holds {size} bytes, \
         longest host logged {longest} bytes; `list` took {before:?} before, {after:?} after; \
         `net allow` (which logs an event) {allow_before:?} before, {allow_after:?} after"
    );
    assert!(dropped > 0, "no count of dropped refusals");
    // The caps: the proxy's own log (two files of 512 KiB at most) and the
    // event log (two files of 4 MiB at most).
    assert!(size <= 9 << 20, "logs/ holds {size} bytes");
    let own: u64 = files_under(&env.state().join("logs"))
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == id.as_str()))
        .filter_map(|f| std::fs::symlink_metadata(f).ok())
        .map(|m| m.len())
        .sum();
    assert!(
        own <= (1 << 20) + (64 << 10),
        "the proxy's log: {own} bytes"
    );
    assert!(longest <= 300, "host names are truncated: {longest}");
    env.ok(&["stop", &id]);
}

/// The text a box or a repository might write to reach a terminal: an OSC
/// title, a C1 CSI and a right-to-left override.
const HOSTILE: &str = "x\u{1b}]0;PWNED\u{7}\u{9b}2J\u{202e}gpj.exe";

/// A registry entry `esc-w-claude` carrying [`HOSTILE`] where a box or a
/// repository writes it (a status reason, a worktree's branch).
fn write_hostile_entry(env: &Env) -> &'static str {
    let project = env.project("esc");
    let reg = serde_json::json!({"instances": {"esc-w-claude": {
        "id": "esc-w-claude", "project_path": project, "project_name": "esc",
        "mode": "claude", "status": "error", "port": env.port_base,
        "status_reason": format!("setup failed: {HOSTILE}"),
        "timestamps": {"created": chrono::Utc::now().to_rfc3339()},
        "resources": {}, "config": {},
        "worktree": {"branch": HOSTILE, "name": "w"},
    }}});
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_string_pretty(&reg).unwrap(),
    )
    .unwrap();
    HOSTILE
}

/// A stopped worktree instance whose branch (a repository's) and reason (a
/// box's setup failure) hold a title sequence, a C1 CSI and a
/// right-to-left override: `list` and `show` print them escaped, `--json`
/// with JSON escapes only.
#[test]
fn list_and_show_print_what_a_box_or_a_repository_wrote_escaped() {
    let env = Env::new();
    write_hostile_entry(&env);
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["show", "esc-w-claude"],
        vec!["show", "esc-w-claude", "--json"],
    ] {
        let text = env.ok(&args);
        assert!(text.contains("PWNED"), "{args:?}: {text}");
        assert_eq!(drives_a_terminal(&text), None, "{args:?}: {text:?}");
    }
    let shown = env.ok(&["show", "esc-w-claude"]);
    assert!(shown.contains("\\u{202e}gpj.exe"), "{shown}");
}

/// The API's JSON is printed by terminals too (`curl`): what a box or a
/// repository wrote (a branch, a status reason) comes out with C1, DEL and
/// bidi characters escaped, as the CLI's `--json` does.
#[test]
fn the_apis_json_escapes_what_a_box_or_a_repository_wrote() {
    let env = Env::new();
    let hostile = write_hostile_entry(&env);
    let srv = api_support::Serve::start(&env);
    let tok = api_support::token(&env);
    for path in ["/api/v1/instances", "/api/v1/instances/esc-w-claude"] {
        let r = srv.req("GET", path).bearer(&tok).send();
        let text = r.text();
        assert!(text.contains("PWNED"), "{path}: {text}");
        assert_eq!(drives_a_terminal(&text), None, "{path}: {text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let inst = if back.is_array() { &back[0] } else { &back };
        assert_eq!(
            inst["worktree"]["branch"], hostile,
            "{path}: the value read back is the same"
        );
    }
}

#[test]
fn the_dashboards_event_feed_shows_the_boxs_refusals_escaped() {
    require_docker!();
    let (env, _net) = allowlist_env();
    let (_id, cid) = start(&env, &env.unique("feed"));
    let srv = api_support::Serve::start(&env);
    let tok = api_support::token(&env);
    let mut feed = srv.req("GET", "/api/v1/events").bearer(&tok).stream();
    let r = via_proxy(
        &cid,
        "CONNECT feed\\033]0;PWNED\\007\\302\\2332J.test:443 HTTP/1.1\\r\\n\\r\\n",
    );
    assert!(r.contains("403"), "{r}");
    let line = feed
        .wait_for_line("PWNED", Duration::from_secs(20))
        .expect("the proxy's refusal on the live feed");
    assert_eq!(drives_a_terminal(&line), None, "{line:?}");
}
