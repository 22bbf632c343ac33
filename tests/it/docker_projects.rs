//! Project identity against the real engine: two projects with the same
//! basename get two instances (never each other's), and hostile or unusual
//! paths (spaces, quotes, `$(…)`, non-ASCII) work without any shell
//! interpretation.

use crate::common;

use crate::common::{inspect, stderr, stdout, Env};
use crate::docker_support::*;
use std::path::Path;

fn start_in(env: &Env, dir: &Path) -> std::process::Output {
    env.run_in(dir, &["start", "--mode", "claude", "--detach"])
}

#[test]
fn same_basename_in_two_parents_gets_two_instances() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("api");
    let one = env.project(&format!("work/{name}"));
    let two = env.project(&format!("play/{name}"));
    std::fs::write(one.join("which.txt"), "one").unwrap();
    std::fs::write(two.join("which.txt"), "two").unwrap();
    let id1 = format!("{name}-claude");
    let id2 = format!("{name}-2-claude");

    let out = start_in(&env, &one);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id1);
    let out = start_in(&env, &two);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id2);

    for (id, dir, which) in [(&id1, &one, "one"), (&id2, &two, "two")] {
        let c = inspect(&common::cname(id)).expect("container exists");
        assert_eq!(c["State"]["Status"], "running");
        assert_eq!(
            c["Config"]["Labels"]["ai.project_path"],
            dir.to_str().unwrap()
        );
        assert_eq!(c["Config"]["Labels"]["ai.instance"], id.as_str());
        let seen = docker_ok(&[
            "exec",
            &common::cname(id),
            "cat",
            dir.join("which.txt").to_str().unwrap(),
        ]);
        assert_eq!(seen, which, "{id} mounts the wrong project");
        assert_eq!(env.instance(id)["project_path"], dir.to_str().unwrap());
    }

    // Starting again from each directory finds that directory's instance.
    for (id, dir) in [(&id1, &one), (&id2, &two)] {
        let out = start_in(&env, dir);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{id} is already running")),
            "from {}: {}",
            dir.display(),
            stderr(&out)
        );
    }
    // Inside a git work tree, a subdirectory belongs to the top-level project.
    std::fs::create_dir_all(one.join(".git")).unwrap();
    std::fs::create_dir_all(one.join("src/deep")).unwrap();
    let out = start_in(&env, &one.join("src/deep"));
    assert!(
        stderr(&out).contains(&format!("{id1} is already running")),
        "{}",
        stderr(&out)
    );
    // `find` by path names the right one.
    let found = env.ok(&["find", two.to_str().unwrap()]);
    assert!(found.starts_with(&format!("{id2}\t")), "{found}");
    assert_eq!(env.registry()["instances"].as_object().unwrap().len(), 2);
}

#[test]
fn unusual_project_paths_work() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let t = &env.token;
    let pwned = format!("/tmp/pwned-{t}");
    let _ = std::fs::remove_file(&pwned);
    let rels = [
        format!("with space {t}"),
        format!("it's-{t}"),
        format!("say \"hi\" {t}"),
        format!("$(touch {pwned})"),
        format!("`touch {pwned}` {t}"),
        format!("café-{t}"),
        format!("semi;colon&amp {t}"),
    ];
    for rel in &rels {
        let dir = env.project(rel);
        std::fs::write(dir.join("here.txt"), rel).unwrap();
        let out = start_in(&env, &dir);
        assert!(
            out.status.success(),
            "start in {}: {}",
            dir.display(),
            stderr(&out)
        );
        let id = stdout(&out).trim().to_owned();
        let entry = env.instance(&id);
        assert_eq!(entry["project_path"], dir.to_str().unwrap(), "{entry}");
        let project = entry["project_name"].as_str().unwrap().to_owned();
        assert!(
            project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{project}"
        );
        let cname = common::cname(&id);
        let c = inspect(&cname).expect("container exists");
        assert_eq!(
            c["Config"]["Labels"]["ai.project_path"],
            dir.to_str().unwrap()
        );
        let ls = docker_ok(&["exec", &cname, "ls", dir.to_str().unwrap()]);
        assert!(ls.contains("here.txt"), "mount of {}: {ls}", dir.display());
        let content = docker_ok(&[
            "exec",
            &cname,
            "cat",
            dir.join("here.txt").to_str().unwrap(),
        ]);
        assert_eq!(&content, rel);
        // `list` and `show` print it back as it is.
        assert!(env.ok(&["show", &id]).contains(dir.to_str().unwrap()));
    }
    assert!(
        !Path::new(&pwned).exists(),
        "a project path was run through a shell"
    );
    let list = env.ok(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), rels.len(), "{list}");
}
