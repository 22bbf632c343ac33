//! `install.sh --uninstall` and `rm --all` touch this state home's
//! instances only: the engine is shared with other users and homes.

use crate::common;

use crate::common::{inspect, stderr, stdout, Env};
use std::path::Path;
use std::process::Command;

fn install_sh(home: &Path, state: &Path, prefix: &Path, extra: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    Command::new("bash")
        .arg(script)
        .arg("--prefix")
        .arg(prefix)
        .args(["--no-modify-rc"])
        .args(extra)
        .env("HOME", home)
        .env("AI_SESSIONS_HOME", state)
        .env_remove("PREFIX")
        .output()
        .unwrap()
}

fn running(name: &str) -> bool {
    inspect(name).is_some_and(|c| c["State"]["Running"] == true)
}

fn start(env: &Env, name: &str) -> String {
    let proj = env.project(&env.unique(name));
    let out = env.run_in(&proj, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn container_of(env: &Env, id: &str) -> String {
    env.instance(id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn uninstall_and_rm_all_leave_other_homes_alone() {
    require_docker!();
    let (a, b) = (Env::new(), Env::new());
    a.use_test_image("");
    b.use_test_image("");
    let ida = start(&a, "mine");
    let idb = start(&b, "theirs");
    let (ca, cb) = (container_of(&a, &ida), container_of(&b, &idb));
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let prefix = t.path().join("prefix");
    let bin = common::BIN;

    // Plain uninstall: names a command scoped to this home, stops nothing.
    let out = install_sh(&home, a.state(), &prefix, &["--binary", bin]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = install_sh(&home, a.state(), &prefix, &["--uninstall"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("label=ai.managed-by=ai-sessctl)"),
        "no command over every user's containers: {text}"
    );
    let label = format!(
        "label=ai.home={}",
        a.state().canonicalize().unwrap().display()
    );
    assert!(
        text.contains(&label) && text.contains("--remove-instances"),
        "{text}"
    );
    assert!(running(&ca) && running(&cb));

    // With --remove-instances: this home's instances go, not the other's.
    let out = install_sh(&home, a.state(), &prefix, &["--binary", bin]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = install_sh(
        &home,
        a.state(),
        &prefix,
        &["--uninstall", "--remove-instances"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(inspect(&ca).is_none(), "this home's container is removed");
    assert!(a.registry()["instances"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
    assert!(running(&cb), "another home's container keeps running");
    assert_eq!(b.instance(&idb)["status"], "running");
    assert!(!prefix.join("bin/ai-sessctl").exists());

    // `rm --all` alone, the same scope.
    let idb2 = start(&b, "second");
    let out = b.run(&["rm", "--all"]);
    assert!(!out.status.success(), "live instances need --force");
    let out = b.run(&["rm", "--all", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(inspect(&cb).is_none());
    assert!(
        b.registry()["instances"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{idb2}"
    );
}
