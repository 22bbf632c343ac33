//! Lifecycle commands against the real engine: stop (graceful, forced,
//! all), changes made behind our back, registry repair, pause/resume,
//! restart, rm, gc, logs, max_instances.

use crate::common;

use crate::common::{stderr, stdout, test_image_tag, wait_until, Env};
use crate::docker_support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Starts `claude` detached in a new project `<name>-<token>`; returns the id.
fn start(env: &Env, name: &str) -> (String, PathBuf) {
    let name = env.unique(name);
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "start {name}: {}", stderr(&out));
    let id = format!("{name}-claude");
    assert_eq!(stdout(&out).trim(), id);
    (id, proj)
}

fn status(env: &Env, id: &str) -> String {
    let v: Value = serde_json::from_str(&env.ok(&["show", id, "--json"])).unwrap();
    v["status"].as_str().unwrap().to_owned()
}

#[test]
fn stop_graceful_and_forced() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (a, _) = start(&env, "grace");
    let (b, _) = start(&env, "force");

    // Graceful: the agent gets SIGTERM and says so (exit 143).
    let out = env.run(&["stop", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("stopped {a}")),
        "{}",
        stderr(&out)
    );
    let e = env.instance(&a);
    assert_eq!(e["status"], "stopped", "{e}");
    assert_eq!(e["exit_code"], 143, "graceful stop = SIGTERM handled: {e}");
    let log = std::fs::read_to_string(env.state().join(format!("logs/{a}.log"))).unwrap();
    assert!(log.contains("terminated"), "the agent saw SIGTERM: {log}");
    assert!(!container_exists(&common::cname(&a)));

    // Forced: killed at once (137), no "terminated".
    env.ok(&["stop", "--force", &b]);
    let e = env.instance(&b);
    assert_eq!(e["status"], "stopped", "{e}");
    assert_eq!(e["exit_code"], 137, "forced stop = SIGKILL: {e}");
    let log = std::fs::read_to_string(env.state().join(format!("logs/{b}.log"))).unwrap();
    assert!(!log.contains("terminated"), "{log}");
    assert!(!container_exists(&common::cname(&b)));

    // Stopping an unknown id: not found (3).
    let out = env.run(&["stop", &format!("nope-{}-claude", env.token)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// This home's networks, by name.
fn networks(env: &Env) -> Vec<String> {
    let label = format!("label=ai.home={}", common::home_label(env.state()));
    docker_ok(&["network", "ls", "--format", "{{.Name}}", "--filter", &label])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn stop_all_stops_every_instance() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    // Networks named after their instance, removed by their stop.
    no_network_pool(&env);
    let ids: Vec<String> = ["all1", "all2", "all3", "all4"]
        .iter()
        .map(|n| start(&env, n).0)
        .collect();
    assert_eq!(networks(&env).len(), ids.len(), "a network each");
    let cids: Vec<String> = ids
        .iter()
        .map(|id| {
            env.instance(id)["container_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let t = std::time::Instant::now();
    let out = env.run(&["stop", "--all"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    for id in &ids {
        assert!(
            stderr(&out).contains(&format!("stopped {id}")),
            "{}",
            stderr(&out)
        );
        // Recorded, output kept, container ended, by the time it returns
        // (removing it is left to the batch's helper, with its network).
        let e = env.instance(id);
        assert_eq!(e["status"], "stopped", "{e}");
        assert_eq!(e["exit_code"], 143, "SIGTERM handled: {e}");
        assert!(e["stopping"].is_null(), "{e}");
        let log = env.ok(&["logs", id]);
        assert!(log.contains("fake-agent ready"), "{id}: {log:?}");
        assert!(log.contains("terminated"), "{id}: {log:?}");
        let c = common::inspect(&common::cname(id));
        assert!(
            c.as_ref().is_none_or(|c| c["State"]["Running"] == false),
            "{c:?}"
        );
    }
    // Informative only: the agents handle SIGTERM, so this is short anyway.
    eprintln!("stop --all of {} took {took:?}", ids.len());
    // The networks go right after, in the background; a start meanwhile
    // gets a network that stays.
    let proj = env.project(ids[0].trim_end_matches("-claude"));
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "start again: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), ids[0]);
    let mine = common::cname(&ids[0]);
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            left = networks(&env);
            left == [mine.clone()]
        }),
        "only the restarted instance's network is left: {left:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(networks(&env), std::slice::from_ref(&mine));
    for cid in &cids {
        assert!(
            common::inspect(cid).is_none(),
            "stopped container {cid} left"
        );
    }
    let c = common::inspect(&mine).expect("restarted container");
    assert_eq!(c["State"]["Running"], true, "{c}");
    assert!(c["NetworkSettings"]["Networks"].get(&mine).is_some(), "{c}");
    env.ok(&["stop", "--all"]);
    assert!(
        networks(&env).is_empty(),
        "one stop removes its network itself"
    );
    let out = env.run(&["stop", "--all"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("no instances running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn killed_behind_our_back_shows_error_with_reason() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, _) = start(&env, "killed");
    docker_ok(&["kill", &common::cname(&id)]);
    let list = env.ok(&["list"]);
    let line = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(
        line.contains("error") || line.contains("stopped"),
        "list after docker kill: {list}"
    );
    let show = env.ok(&["show", &id]);
    assert!(show.contains("reason:"), "{show}");
    assert!(
        show.contains("137"),
        "the reason names the exit code: {show}"
    );
    let e = env.instance(&id);
    assert_eq!(e["exit_code"], 137, "{e}");
    // The dead container's output was kept and the container cleaned up.
    assert!(
        wait_until(Duration::from_secs(5), || !container_exists(
            &common::cname(&id)
        )),
        "auto_cleanup removes the killed container"
    );
    assert!(env.state().join(format!("logs/{id}.log")).exists());
}

#[test]
fn removed_behind_our_back_shows_stopped() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, _) = start(&env, "removed");
    docker_ok(&["rm", "-f", &common::cname(&id)]);
    let list = env.ok(&["list"]);
    let line = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(line.contains("stopped"), "{list}");
    let show = env.ok(&["show", &id]);
    assert!(show.contains("container removed"), "{show}");
    // And it can simply be started again.
    let (id2, _) = (start(&env, "removed").0, ());
    assert_eq!(id2, id);
    assert_eq!(status(&env, &id), "running");
}

#[test]
fn repair_rebuilds_a_deleted_registry_from_labels() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    docker_config(&env, "");
    let (a, pa) = start(&env, "rep1");
    let (b, pb) = start(&env, "rep2");
    let before = env.registry();
    std::fs::remove_file(env.state().join("registry.json")).unwrap();
    let out = env.run(&["registry", "repair"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = env.registry();
    let got: Vec<&String> = after["instances"].as_object().unwrap().keys().collect();
    assert_eq!(got.len(), 2, "exactly our two instances come back: {got:?}");
    for (id, path) in [(&a, &pa), (&b, &pb)] {
        let (old, new) = (&before["instances"][id], &after["instances"][id]);
        assert_eq!(new["status"], "running", "{new}");
        assert_eq!(new["port"], old["port"], "{id}");
        assert_eq!(new["project_path"], path.to_str().unwrap());
        assert_eq!(new["container_id"], old["container_id"]);
        assert_eq!(new["mode"], "claude");
    }
    // Usable afterwards.
    env.ok(&["stop", &a, &b]);
    assert_eq!(env.instance(&a)["status"], "stopped");
    assert!(!container_exists(&common::cname(&b)));
}

#[test]
fn repair_moves_a_corrupt_registry_aside() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    docker_config(&env, "");
    let (a, _) = start(&env, "corrupt");
    let reg_path = env.state().join("registry.json");
    let mut bytes = std::fs::read(&reg_path).unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes.extend_from_slice(b"\x00garbage{{");
    std::fs::write(&reg_path, &bytes).unwrap();

    // Commands refuse the corrupt file (and leave it alone).
    let out = env.run(&["list"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("registry.json"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&reg_path).unwrap(), bytes);

    let out = env.run(&["registry", "repair"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let aside: Vec<PathBuf> = std::fs::read_dir(env.state())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("registry.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the bad file is kept aside: {aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bytes,
        "with its old bytes"
    );
    let e = env.instance(&a);
    assert_eq!(e["status"], "running", "{e}");
    env.ok(&["registry", "check"]);
}

#[test]
fn pause_resume_restart() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, _) = start(&env, "pause");
    let cname = common::cname(&id);

    env.ok(&["pause", &id]);
    assert_eq!(status(&env, &id), "paused");
    assert_eq!(container_state(&cname).as_deref(), Some("paused"));
    // Pausing twice is refused.
    let out = env.run(&["pause", &id]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    env.ok(&["resume", &id]);
    assert_eq!(status(&env, &id), "running");
    assert_eq!(container_state(&cname).as_deref(), Some("running"));

    let old = env.instance(&id);
    let out = env.run(&["restart", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new = env.instance(&id);
    assert_eq!(new["status"], "running", "{new}");
    assert_ne!(new["container_id"], old["container_id"], "a new container");
    assert_eq!(
        new["restarts"].as_u64().unwrap_or(0),
        old["restarts"].as_u64().unwrap_or(0) + 1
    );
    let c = common::inspect(&cname).unwrap();
    assert_eq!(c["Id"], new["container_id"]);
    assert_eq!(c["State"]["Status"], "running");

    // A paused instance can be stopped.
    env.ok(&["pause", &id]);
    env.ok(&["stop", &id]);
    assert_eq!(env.instance(&id)["status"], "stopped");
    assert!(!container_exists(&cname));
}

#[test]
fn rm_refuses_running_unless_forced() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, _) = start(&env, "rm");
    let cname = common::cname(&id);
    let out = env.run(&["rm", &id]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(container_state(&cname).as_deref(), Some("running"));

    env.ok(&["rm", "--force", &id]);
    assert!(!container_exists(&cname));
    assert!(env.instance(&id).is_null(), "entry removed");
    let out = env.run(&["show", &id]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn gc_removes_a_stray_labelled_container() {
    require_docker!();
    // Its stray has no `ai.home`: no other test's gc or repair meanwhile.
    let _strays = common::plant_strays();
    let env = Env::new();
    docker_config(&env, "");
    let (mine, _) = start(&env, "gckeep");
    let stray = format!("ai-stray-{}", env.token);
    let _guard = RmOnDrop(vec![stray.clone()]);
    docker_ok(&[
        "create",
        "--name",
        &stray,
        "--label",
        "ai.managed-by=ai-sessctl",
        "--label",
        &format!("ai.instance=stray-{}-claude", env.token),
        test_image_tag(),
    ]);
    let dry = env.ok(&["gc", "--dry-run"]);
    assert!(
        dry.contains(&format!("stray-{}-claude", env.token)),
        "{dry}"
    );
    assert!(container_exists(&stray), "dry run removes nothing");

    let out = env.ok(&["gc"]);
    assert!(
        out.contains(&format!("stray-{}-claude", env.token)),
        "{out}"
    );
    assert!(!container_exists(&stray), "stray container removed");
    assert_eq!(
        container_state(&common::cname(&mine)).as_deref(),
        Some("running"),
        "gc leaves known instances alone"
    );
}

#[test]
fn logs_tail_live_and_saved() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, _) = start(&env, "logs");
    let cname = common::cname(&id);
    // Output on the agent's terminal, as if the agent printed it.
    docker_ok(&[
        "exec",
        &cname,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done > /dev/console",
    ]);
    let want: Vec<String> = (6..=10).map(|i| format!("line{i}")).collect();
    let mut live = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            live = env.ok(&["logs", &id, "--tail", "5"]);
            live.contains("line10")
        }),
        "{live}"
    );
    let lines: Vec<&str> = live.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines, want, "live tail: {live:?}");

    env.ok(&["stop", &id]);
    assert!(!container_exists(&cname));
    let saved = env.ok(&["logs", &id, "--tail", "5"]);
    let lines: Vec<&str> = saved.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines.len(), 5, "{saved:?}");
    assert_eq!(lines[..4], want[1..], "{saved:?}");
    assert_eq!(lines[4], "terminated", "{saved:?}");
}

/// `logs` shows what the agent's screen showed, as text: colours, cursor
/// moves and queries to the terminal (which the user's own terminal would
/// answer into their prompt) are played into an emulator, not printed; a
/// line redrawn in place shows once, as it ended. `--raw` is the stream.
#[test]
fn logs_show_the_screen_as_text_and_raw_gives_the_stream() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let (id, proj) = start(&env, "logsvt");
    let cname = common::cname(&id);
    docker_ok(&[
        "exec",
        &cname,
        "sh",
        "-c",
        r"printf '\033[31mred title\033[39m\r\n\033]11;?\007\033[c\033P+q544e\033\\progress 10%%\rprogress 100%%\r\n\033[5Gindented\r\n' > /dev/console",
    ]);
    let mut shown = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            shown = env.ok(&["logs", &id]);
            shown.contains("indented")
        }),
        "{shown}"
    );
    assert!(
        !shown.contains('\x1b'),
        "an escape reached the reader: {shown:?}"
    );
    let lines: Vec<&str> = shown.lines().collect();
    for want in ["red title", "progress 100%", "    indented"] {
        assert!(lines.contains(&want), "{want:?} not shown: {shown:?}");
    }
    assert!(!shown.contains("10%p"), "{shown:?}");
    assert!(
        !shown.contains("progress 10%"),
        "a redrawn line shows twice: {shown:?}"
    );
    assert_eq!(
        env.ok(&["logs", &id, "--tail", "2"])
            .lines()
            .collect::<Vec<_>>(),
        ["progress 100%", "    indented"]
    );
    // Without an id: the instance of the project you are in (a
    // subdirectory too); elsewhere, the reason.
    std::fs::create_dir_all(proj.join("sub")).unwrap();
    let here = env.run_in(&proj.join("sub"), &["logs", "--tail", "2"]);
    assert!(here.status.success(), "{}", stderr(&here));
    assert_eq!(
        stdout(&here).lines().collect::<Vec<_>>(),
        ["progress 100%", "    indented"]
    );
    let elsewhere = env.run_in(env.projects.path(), &["logs"]);
    assert!(!elsewhere.status.success());
    assert!(
        stderr(&elsewhere).contains("no instance for"),
        "{}",
        stderr(&elsewhere)
    );
    let raw = env.ok(&["logs", &id, "--raw"]);
    assert!(raw.contains("\x1b[31mred title"), "{raw:?}");
    // Saved when it ends: rendered the same way.
    env.ok(&["stop", &id]);
    let saved = env.ok(&["logs", &id]);
    assert!(saved.lines().any(|l| l == "red title"), "{saved:?}");
    assert!(!saved.contains('\x1b'), "{saved:?}");
}

#[test]
fn max_instances_is_enforced() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "max_instances = 2");
    start(&env, "max1");
    start(&env, "max2");
    let name = env.unique("max3");
    let proj = env.project(&name);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("ai-sessctl: error:"), "{err}");
    assert!(err.contains("max_instances"), "{err}");
    let reg = env.registry();
    assert_eq!(reg["instances"].as_object().unwrap().len(), 2, "{reg}");
    assert!(!container_exists(&common::cname(&format!("{name}-claude"))));
}

#[test]
fn gc_and_repair_leave_another_homes_instances_alone() {
    require_docker!();
    let _strays = common::gc_turn();
    let mine = Env::new();
    docker_config(&mine, "");
    let theirs = Env::new();
    docker_config(&theirs, "");
    let (their_id, _) = start(&theirs, "otherhome");
    let their_c = common::cname(&their_id);

    mine.ok(&["gc"]);
    assert_eq!(
        container_state(&their_c).as_deref(),
        Some("running"),
        "gc removed another state home's running instance"
    );
    mine.ok(&["registry", "repair"]);
    assert!(
        mine.instance(&their_id).is_null(),
        "repair adopted another home's instance: {}",
        mine.registry()
    );
    assert_eq!(theirs.instance(&their_id)["status"], "running");
}

#[test]
fn lost_registry_then_start_explains_and_repair_recovers() {
    require_docker!();
    let _strays = crate::common::gc_turn(); // it runs gc or registry repair
    let env = Env::new();
    docker_config(&env, "");
    let (id, proj) = start(&env, "lost");
    let cid = env.instance(&id)["container_id"].clone();
    std::fs::remove_file(env.state().join("registry.json")).unwrap();

    // The name is taken by our own (unlisted) container: a clear message.
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("registry repair"), "{err}");
    assert!(
        env.instance(&id).is_null(),
        "nothing half-registered: {}",
        env.registry()
    );
    assert_eq!(
        container_state(&common::cname(&id)).as_deref(),
        Some("running"),
        "the running agent was left alone"
    );

    env.ok(&["registry", "repair"]);
    assert_eq!(env.instance(&id)["container_id"], cid);
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
}

/// With `auto_cleanup = false` the stopped container keeps its output, and
/// `logs` reads it from there.
#[test]
fn logs_of_a_kept_container_come_from_the_container() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "auto_cleanup = false");
    let (id, _) = start(&env, "keptlogs");
    let cname = common::cname(&id);
    docker_ok(&["exec", &cname, "sh", "-c", "echo kept-line > /dev/console"]);
    env.ok(&["stop", &id]);
    assert_eq!(container_state(&cname).as_deref(), Some("exited"));
    let _ = std::fs::remove_file(env.state().join("logs").join(format!("{id}.log")));
    let out = env.run(&["logs", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept-line"), "{}", stdout(&out));
    let _ = docker(&["rm", "-f", &cname]);
}

/// A start the engine refuses after its networks were made (here: more
/// CPUs than any machine has) leaves nothing behind: no network, no
/// container, no proxy sidecar, no entry; with and without an egress
/// policy (which adds an internal network, a network out and the proxy).
#[test]
fn a_start_the_engine_refuses_leaves_nothing_behind() {
    require_docker!();
    for egress in ["open", "allowlist"] {
        let env = Env::new();
        // Goes on in `[networking]`, which write_config opens.
        env.write_config(&format!(
            "egress = \"{egress}\"\n\n\
             [global]\nruntime = \"docker\"\n\n\
             [resources.cpu]\nlimit = \"1024\"\n\n\
             [agents.claude]\nimage = \"{}\"\n",
            test_image_tag()
        ));
        let proj = env.project(&env.unique("refused"));
        let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
        assert_eq!(out.status.code(), Some(1), "{egress}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("create container") && stderr(&out).contains("CPUs"),
            "{egress}: the engine's reason is said: {}",
            stderr(&out)
        );
        assert!(networks(&env).is_empty(), "{egress}: {:?}", networks(&env));
        let home = common::home_label(env.state());
        let left = containers_with_label("ai.home", &home);
        assert!(left.is_empty(), "{egress}: containers left: {left:?}");
        assert!(
            env.ok(&["list"]).contains("No instances"),
            "{egress}: {}",
            env.ok(&["list"])
        );
    }
}
