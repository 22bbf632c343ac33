//! `ai-sessctl diff [ID]` and `GET /api/v1/instances/{id}/diff`: real git
//! (repositories cloned from a local bare one), real containers of the
//! test image. What the agent changed in a worktree (committed,
//! uncommitted, untracked, not ignored) against the merge-base with its
//! base branch; an instance on the main checkout, its uncommitted changes;
//! the user's own pager from their global config, never a program the
//! repository names; the agent's control bytes shown escaped.

use crate::api_support::{token, Serve};
use crate::common::{git, stderr, stdout, wait_until, Env, BIN};
use crate::docker_support::docker_config;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A clone of a new bare repository (so `origin/HEAD` names `main`) with
/// `src/app.py`, `README` and a `.gitignore` of `*.log`.
pub fn cloned_repo(env: &Env, name: &str) -> PathBuf {
    let files = [
        ("src/app.py", "def main():\n    x = 0\n    return x\n"),
        ("README", "hello\n"),
        (".gitignore", "*.log\n"),
    ];
    crate::common::cloned(env, name, &files).repo
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn file<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {v:#}"))
}

/// A `-w feat` instance of the test image; its id and worktree path.
fn worktree_instance(env: &Env, repo: &Path) -> (String, PathBuf) {
    let out = env.run_in(
        repo,
        &["start", "--mode", "claude", "--detach", "-w", "feat"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let wt = PathBuf::from(env.instance(&id)["worktree"]["path"].as_str().unwrap());
    (id, wt)
}

#[test]
fn diff_of_a_worktree_shows_committed_uncommitted_and_untracked_work() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("rev");
    let repo = cloned_repo(&env, &name);
    let (id, wt) = worktree_instance(&env, &repo);

    // The agent's work: a commit, an edit not committed, a new file, and
    // a log git ignores.
    std::fs::write(
        wt.join("src/app.py"),
        "def main():\n    x = 1\n    return x\n",
    )
    .unwrap();
    git(&wt, &["commit", "-q", "-am", "agent: x is 1"]);
    std::fs::write(wt.join("README"), "hello\nworld\n").unwrap();
    std::fs::write(wt.join("notes.txt"), "one\ntwo\n").unwrap();
    std::fs::write(wt.join("build.log"), "noise\n").unwrap();
    // Meanwhile the base branch moves on: not the agent's work.
    std::fs::write(repo.join("main-only.txt"), "later\n").unwrap();
    git(&repo, &["add", "main-only.txt"]);
    git(&repo, &["commit", "-q", "-m", "main moves on"]);

    let out = env.run(&["diff", &id, "--no-pager"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "diff --git a/src/app.py b/src/app.py",
        "-    x = 0",
        "+    x = 1",
        "+++ b/README",
        "+world",
        "+++ b/notes.txt",
        "+two",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(!text.contains("build.log"), "{text}");
    assert!(!text.contains("main-only"), "{text}");
    assert!(stderr(&out).contains("against main"), "{}", stderr(&out));

    let out = env.run(&["diff", &id, "--stat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stat = stdout(&out);
    assert!(stat.contains(" src/app.py | 2 +-"), "{stat}");
    assert!(stat.contains(" notes.txt  | 2 ++"), "{stat}");
    assert!(
        stat.contains("3 files changed, 4 insertions(+), 1 deletion(-)"),
        "{stat}"
    );

    let v = json(&env.run(&["diff", &id, "--json"]));
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["base"], "main");
    let merge_base = git(&wt, &["merge-base", "HEAD", "main"]);
    assert_eq!(v["base_commit"], merge_base.as_str());
    assert_eq!(
        v["branch"],
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).as_str()
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 3, "{v:#}");
    assert_eq!(
        (v["added"].as_u64(), v["removed"].as_u64()),
        (Some(4), Some(1))
    );
    let app = file(&v, "src/app.py");
    assert_eq!(app["status"], "modified");
    assert_eq!(
        (app["added"].as_u64(), app["removed"].as_u64()),
        (Some(1), Some(1))
    );
    let lines = &app["hunks"][0]["lines"];
    let added = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "add")
        .unwrap();
    assert_eq!(added["text"], "    x = 1");
    assert_eq!(added["new"], 2);
    assert!(added["old"].is_null());
    let notes = file(&v, "notes.txt");
    assert_eq!(notes["status"], "untracked");
    assert_eq!(notes["added"], 2);
    assert_eq!(file(&v, "README")["status"], "modified");
    assert_eq!(v["truncated"], false);

    // Without an id, from inside the worktree: its instance.
    let here = json(&env.run_in(&wt.join("src"), &["diff", "--json"]));
    assert_eq!(here["id"], id.as_str());
    assert_eq!(here["files"], v["files"]);

    // The API answers the same, with the token only.
    let srv = Serve::start(&env);
    let path = format!("/api/v1/instances/{id}/diff");
    assert_eq!(srv.req("GET", &path).send().status, 401);
    let r = srv.req("GET", &path).bearer(&token(&env)).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let api = r.json();
    assert_eq!(api["files"], v["files"]);
    assert_eq!(api["base_commit"], v["base_commit"]);
    let r = srv
        .req("GET", "/api/v1/instances/no-such-claude/diff")
        .bearer(&token(&env))
        .send();
    assert_eq!(r.status, 404, "{}", r.text());
    env.ok(&["stop", &id]);
}

#[test]
fn diff_of_an_instance_on_the_main_checkout_is_its_uncommitted_work() {
    require_docker!();
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("revmain");
    let repo = cloned_repo(&env, &name);
    let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    // A commit (the user's as much as the agent's): not shown.
    std::fs::write(repo.join("README"), "hello\ncommitted\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "committed"]);
    std::fs::write(
        repo.join("src/app.py"),
        "def main():\n    x = 2\n    return x\n",
    )
    .unwrap();
    std::fs::write(repo.join("new.txt"), "fresh\n").unwrap();

    let out = env.run_in(&repo.join("src"), &["diff", "--no-pager"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("+    x = 2"), "{text}");
    assert!(text.contains("+fresh"), "{text}");
    assert!(!text.contains("committed"), "{text}");
    assert!(stderr(&out).contains("against HEAD"), "{}", stderr(&out));
    let v = json(&env.run(&["diff", &id, "--json"]));
    assert_eq!(v["base"], "HEAD");
    assert_eq!(v["scope"], "checkout");
    assert_eq!(
        v["base_commit"],
        git(&repo, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(file(&v, "new.txt")["status"], "untracked");

    // A huge change is cut, says so, and keeps its counts whole.
    let big: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(repo.join("README"), big).unwrap();
    let v = json(&env.run(&["diff", &id, "--json"]));
    assert_eq!(v["truncated"], true);
    let readme = file(&v, "README");
    assert_eq!(readme["added"], 30_000);
    assert_eq!(readme["truncated"], true);
    let shown: usize = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["hunks"].as_array().unwrap())
        .map(|h| h["lines"].as_array().unwrap().len())
        .sum();
    assert!(shown <= 20_000, "{shown} lines");
    let out = env.run(&["diff", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("too large"), "{}", stderr(&out));
    env.ok(&["stop", &id]);
}

/// The repository names programs for git to run (an external diff, a
/// pager, a textconv and a clean filter), and the agent's files hold
/// terminal escapes: none of the programs runs, the escapes come out as
/// text; the user's own pager (global config) is the one used.
#[test]
fn diff_runs_no_program_of_the_repository_and_escapes_the_agents_bytes() {
    require_docker!();
    if !crate::tmux_support::tools_or_skip(
        "diff_runs_no_program_of_the_repository_and_escapes_the_agents_bytes",
        &["tmux"],
    ) {
        return;
    }
    let env = Env::new();
    docker_config(&env, "");
    let name = env.unique("revhostile");
    let repo = cloned_repo(&env, &name);
    std::fs::write(repo.join("evil.txt"), "calm\n").unwrap();
    git(&repo, &["add", "evil.txt"]);
    git(&repo, &["commit", "-q", "-m", "calm"]);
    let out = env.run_in(&repo, &["start", "--mode", "claude", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();

    let marks = tempfile::tempdir().unwrap();
    let mark = |what: &str| marks.path().join(what);
    let touch = |what: &str| format!("\"touch {}; cat\"", mark(what).display());
    let mut cfg = std::fs::read_to_string(repo.join(".git/config")).unwrap();
    cfg += &format!(
        "[diff]\n\texternal = {}\n[core]\n\tpager = {}\n[diff \"x\"]\n\ttextconv = {}\n\
         [filter \"f\"]\n\tclean = {}\n[pager]\n\tdiff = {}\n",
        touch("external"),
        touch("repo-pager"),
        touch("textconv"),
        touch("filter"),
        touch("repo-pager-diff"),
    );
    std::fs::write(repo.join(".git/config"), cfg).unwrap();
    std::fs::write(repo.join(".gitattributes"), "* diff=x filter=f\n").unwrap();
    let evil = "ok \x1b]0;pwned\x07 then \x1b[2J cleared \u{202e}rtl\n";
    std::fs::write(repo.join("evil.txt"), format!("calm\n{evil}")).unwrap();
    std::fs::write(repo.join("new-evil.txt"), evil).unwrap();

    // Untracked things that are no regular file: a link to a host secret,
    // a link to a host directory, a FIFO nobody writes.
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "HOST-SECRET-CONTENT\n").unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(secret_dir.path(), repo.join("leakdir")).unwrap();
    let fifo = std::ffi::CString::new(repo.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let escaped = "ok \\x1b]0;pwned\\x07 then \\x1b[2J cleared \\u{202e}rtl";
    for args in [
        &["diff", &id, "--no-pager"][..],
        &["diff", &id],
        &["diff", &id, "--stat"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !out.stdout.iter().any(|b| *b == 0x1b || *b == 0x07),
            "{args:?}: raw control bytes: {:?}",
            stdout(&out)
        );
        if args.len() == 2 {
            assert!(
                stdout(&out).contains(&format!("+{escaped}")),
                "{}",
                stdout(&out)
            );
        }
    }
    let text = stdout(&env.run(&["diff", &id, "--no-pager"]));
    assert!(!text.contains("HOST-SECRET-CONTENT"), "{text}");
    assert!(
        text.contains(&format!("+{}", secret.display())),
        "a link is shown as its target: {text}"
    );
    // JSON carries the text as it is, escaped the JSON way.
    let v = json(&env.run(&["diff", &id, "--json"]));
    let line = file(&v, "new-evil.txt")["hunks"][0]["lines"][0]["text"].clone();
    assert_eq!(line, evil.trim_end());
    assert_eq!(file(&v, "evil.txt")["added"], 1);

    // On a terminal, with the user's pager in their global config: it is
    // the one that runs, and what it is given has only our colours raw.
    let home = tempfile::tempdir().unwrap();
    let pager = home.path().join("pager.sh");
    std::fs::write(
        &pager,
        format!("#!/bin/sh\ncat > {}\n", mark("users-pager").display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pager, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        format!(
            "[core]\n\tpager = {}\n[color]\n\tui = auto\n",
            pager.display()
        ),
    )
    .unwrap();
    let envs: Vec<(String, String)> = [
        ("HOME", home.path().to_str().unwrap().to_owned()),
        ("AI_SESSIONS_HOME", env.state().to_str().unwrap().to_owned()),
        ("PATH", std::env::var("PATH").unwrap()),
        ("TERM", "xterm-256color".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let t = crate::tmux_support::Tmux::start(&repo, &envs, &[BIN, "diff", &id]);
    let paged = mark("users-pager");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(&paged)
            .is_ok_and(|b| b.ends_with(b"\n"))),
        "the user's pager did not run; screen:\n{}",
        t.capture()
    );
    let got = std::fs::read(&paged).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("pwned"), "{text}");
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text}");
    assert!(
        text.contains("\x1b[32m+"),
        "coloured on a terminal: {text:?}"
    );
    // Every raw escape is one of our colours (`ESC [ digits ; m`).
    for (i, _) in text.match_indices('\x1b') {
        let rest = &text[i + 1..];
        let sgr = rest.strip_prefix('[').is_some_and(|r| {
            let end = r.find('m').unwrap_or(r.len());
            end < 8 && r[..end].chars().all(|c| c.is_ascii_digit() || c == ';')
        });
        assert!(
            sgr,
            "a raw escape not ours at {i}: {:?}",
            &text[i..(i + 12).min(text.len())]
        );
    }
    assert!(!got.contains(&0x07), "a raw BEL: {text:?}");
    for m in [
        "external",
        "repo-pager",
        "repo-pager-diff",
        "textconv",
        "filter",
    ] {
        assert!(!mark(m).exists(), "the repository's {m} ran");
    }
    // The scene is live: a plain `git diff` there runs them.
    let _ = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["diff"])
        .output();
    assert!(mark("external").exists(), "the poison is not live");
    env.ok(&["stop", &id]);
}

/// The whole loop with the real Claude Code CLI in its image, its model
/// API the fake (through the credential broker): a comment on a line, in
/// the shape the dashboard sends, is typed into the running agent; the
/// model answers with tool calls (read the file, edit it); the file in the
/// worktree changes and `diff` shows the edit.
#[test]
fn the_real_claude_code_edits_the_file_a_line_comment_names() {
    use crate::broker_support::{host_address, unique_secret};
    use crate::fake_model::{FakeApi, Reply, ToolStep};
    require_docker!();
    let Some(image) = crate::docker_support::real_image("claude") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "Done: the constant is named now.".into(),
        ..Reply::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"1Gi\"\n\n\
         [agents.claude]\nimage = \"{image}\"\nenv_passthrough = [\"ANTHROPIC_API_KEY\"]\n\n\
         [agents.claude.credentials]\nupstream = \"http://{}:{}\"\n",
        host_address(),
        fake.port
    ));
    let key = unique_secret("sk-ant-api03-");
    let name = env.unique("revclaude");
    let repo = cloned_repo(&env, &name);
    let start = || {
        let out = env
            .cmd()
            .current_dir(&repo)
            .env("ANTHROPIC_API_KEY", &key)
            .args(["start", "--mode", "claude", "--detach", "-w", "fix"])
            .args(["--", "--permission-mode", "acceptEdits"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let id = start();
    let wt = PathBuf::from(env.instance(&id)["worktree"]["path"].as_str().unwrap());
    // Claude Code's first-run questions (theme, trust in the folder, the
    // key in its environment: the broker's placeholder) are answered in
    // its state, as a user who used it before has them.
    let cid = env.instance(&id)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let placeholder =
        crate::docker_support::docker_ok(&["exec", &cid, "printenv", "ANTHROPIC_API_KEY"]);
    let placeholder = placeholder.trim();
    let last20 = &placeholder[placeholder.len().saturating_sub(20)..];
    env.ok(&["stop", &id]);
    let state = env.state().join("states").join(&id);
    std::fs::create_dir_all(&state).unwrap();
    let cfg = state.join(".claude.json");
    let mut v: serde_json::Value = std::fs::read_to_string(&cfg)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    v["hasCompletedOnboarding"] = true.into();
    v["theme"] = "dark".into();
    v["customApiKeyResponses"] = serde_json::json!({"approved": [last20], "rejected": []});
    v["projects"][wt.to_str().unwrap()] = serde_json::json!({
        "hasTrustDialogAccepted": true,
        "hasCompletedProjectOnboarding": true,
    });
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_eq!(start(), id);

    let app_py = wt.join("src/app.py");
    fake.set_reply(Reply {
        text: "Done: the constant is named now.".into(),
        tool_trigger: Some("use a named constant".into()),
        tool_steps: vec![
            ToolStep {
                name: "Read".into(),
                input: serde_json::json!({"file_path": app_py}),
            },
            ToolStep {
                name: "Edit".into(),
                input: serde_json::json!({
                    "file_path": app_py,
                    "old_string": "    x = 0\n",
                    "new_string": "    START = 0\n    x = START\n",
                }),
            },
        ],
        ..Reply::default()
    });
    // Its prompt is up when its screen asks for input.
    let screen = || stdout(&env.run(&["logs", &id, "--tail", "200"]));
    assert!(
        wait_until(Duration::from_secs(120), || {
            // `❯` at its input line, the permission mode below it.
            let s = screen();
            s.contains('\u{276f}') && s.contains("edits") && s.contains("accept")
        }),
        "Claude Code's prompt did not come up:\n{}",
        screen()
    );
    // Its hooks said so too: `send` takes it without --force.
    assert!(
        wait_until(Duration::from_secs(60), || {
            env.run(&["list"]);
            env.instance(&id)["activity"] == "idle"
        }),
        "{}",
        env.instance(&id)
    );
    // What the dashboard sends for a comment on line 2 of src/app.py.
    let message = "In src/app.py line 2 (    x = 0): use a named constant";
    let out = env.run(&["send", &id, message]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(120), || std::fs::read_to_string(
            &app_py
        )
        .is_ok_and(|t| t.contains("x = START"))),
        "the file was not edited: {:?}\nscreen:\n{}\nthe API saw: {:#?}",
        std::fs::read_to_string(&app_py),
        screen(),
        fake.seen()
            .iter()
            .map(|s| (
                s.target.clone(),
                s.body.chars().take(300).collect::<String>()
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.contains("use a named constant")),
        "the comment did not reach the model"
    );
    let v = json(&env.run(&["diff", &id, "--json"]));
    let app = file(&v, "src/app.py");
    assert_eq!(
        (app["added"].as_u64(), app["removed"].as_u64()),
        (Some(2), Some(1))
    );
    // The turn ends: the agent waits for the next comment.
    assert!(wait_until(Duration::from_secs(60), || {
        env.run(&["list"]);
        env.instance(&id)["activity"] == "idle"
    }));
    env.ok(&["stop", &id]);
}
