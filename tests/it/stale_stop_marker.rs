//! A stop that was killed before it reached the engine leaves its marker on
//! the entry; a crash afterwards must still be seen as a crash (so health
//! watch heals it), not as that stop.

use crate::common;

use crate::common::Env;
use std::process::Command;

#[test]
fn a_dead_stoppers_marker_does_not_hide_a_crash() {
    require_docker!();
    let env = Env::new();
    env.use_test_image("");
    let name = env.unique("marker");
    let dir = env.project(&name);
    let out = env.run_in(&dir, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let id = format!("{name}-claude");

    // The marker of a stopper that no longer runs (pid of an exited child).
    let gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    drop(gone.wait_with_output());
    let path = env.state().join("registry.json");
    let mut reg = env.registry();
    reg["instances"][&id]["stopping"] =
        serde_json::json!({"reason": "stopped by user", "pid": gone_pid, "start_time": 1});
    std::fs::write(&path, serde_json::to_vec_pretty(&reg).unwrap()).unwrap();

    let kill = Command::new("docker")
        .args(["kill", &common::cname(&id)])
        .output()
        .unwrap();
    assert!(kill.status.success());
    env.ok(&["list"]);
    let inst = env.instance(&id);
    assert_eq!(inst["status"], "error", "{inst}");
    assert!(
        inst["status_reason"].as_str().unwrap_or("").contains("137"),
        "{inst}"
    );
}
