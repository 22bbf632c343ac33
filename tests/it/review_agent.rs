//! A review comment acted on: the real Claude Code, started detached in its
//! shipped image with its calls brokered to the fake model API, is sent a
//! comment naming a file and a line; the fake answers as a model would
//! (read the file, edit it), Claude Code runs those tools in the box and
//! the file on the host changes.

use crate::broker_support::{host_address, start_with_key, unique_secret};
use crate::common::{cname_in, stderr, stdout, wait_until, Env};
use crate::docker_support::*;
use crate::fake_model::{Edit, FakeApi, Reply};
use std::path::Path;
use std::time::Duration;

/// Node CLIs start slowly on a busy machine.
const SLOW: Duration = Duration::from_secs(180);

fn config(env: &Env, image: &str, fake: &FakeApi) {
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [agents.claude]\nimage = \"{image}\"\n\n\
         [agents.claude.credentials]\nupstream = \"http://{}:{}\"\n",
        host_address(),
        fake.port
    ));
}

/// Claude Code's own record, as a user who has used it before has it:
/// onboarding done, this project trusted, the key it was given approved
/// (by its last 20 characters, as Claude Code keeps it).
fn seasoned(state: &Path, project: &Path, key: &str) {
    let file = state.join(".claude.json");
    let mut v: serde_json::Value = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let tail = &key[key.len() - 20..];
    v["hasCompletedOnboarding"] = true.into();
    v["theme"] = "dark".into();
    v["customApiKeyResponses"] = serde_json::json!({"approved": [tail], "rejected": []});
    v["projects"][project.to_str().unwrap()] =
        serde_json::json!({"hasTrustDialogAccepted": true, "allowedTools": []});
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn activity(env: &Env, id: &str) -> String {
    env.run(&["list"]);
    env.instance(id)["activity"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn the_real_claude_code_edits_the_file_a_comment_names() {
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let env = Env::new();
    let name = env.unique("rvw");
    let proj = env.project(&name);
    let proj = proj.canonicalize().unwrap();
    std::fs::create_dir(proj.join("src")).unwrap();
    let file = proj.join("src/hello.py");
    std::fs::write(&file, "def greet():\n    return 'hi'\n").unwrap();
    let fake = FakeApi::with(Reply {
        text: "Renamed greet to welcome.".into(),
        edit: Some(Edit {
            dir: proj.to_string_lossy().into_owned(),
            old: "def greet():".into(),
            new: "def welcome():".into(),
        }),
        ..Reply::default()
    });
    config(&env, &image, &fake);
    let key = unique_secret("sk-ant-api03-");
    let id = format!("{name}-claude");
    let args = ["--", "--permission-mode", "acceptEdits"];

    // A first start makes Claude Code's state; its key in the box is the
    // broker's placeholder, kept across starts.
    start_with_key(&env, &proj, Some(&key), &args);
    let state = env.state().join("states").join(&id);
    assert!(
        wait_until(SLOW, || state.join(".claude.json").exists()),
        "Claude Code wrote no state"
    );
    let inspect = crate::common::inspect(&cname_in(&env, &id)).unwrap();
    let placeholder = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.strip_prefix("ANTHROPIC_API_KEY="))
        .next()
        .expect("the box has a key")
        .to_owned();
    env.ok(&["stop", &id]);
    seasoned(&state, &proj, &placeholder);

    start_with_key(&env, &proj, Some(&key), &args);
    assert!(
        wait_until(SLOW, || activity(&env, &id) == "idle"),
        "Claude Code's prompt did not come up: {}",
        stdout(&env.run(&["logs", &id]))
    );

    // The comment, as the dashboard words one on a line of the diff.
    let comment = "In src/hello.py line 1 (+def greet():): call it welcome";
    let o = env.run(&["send", &id, comment]);
    assert!(o.status.success(), "{}", stderr(&o));
    let edited = wait_until(SLOW, || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("def welcome():"))
    });
    assert!(
        edited,
        "the file was not edited: {:?}\nthe API saw: {:#?}\nthe agent showed: {}",
        std::fs::read_to_string(&file),
        fake.seen()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>(),
        stdout(&env.run(&["logs", &id]))
    );
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.contains("call it welcome")),
        "the comment did not reach the model"
    );
    // The turn ends; the agent waits for the next comment.
    assert!(wait_until(SLOW, || activity(&env, &id) == "idle"));
    env.ok(&["rm", "-f", &id]);
}
