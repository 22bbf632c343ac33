//! Shipped completion scripts match the binary, and dynamic completion
//! (clap_complete's `COMPLETE=<shell>` protocol) knows live ids and agents.
//!
//! `AI_SESSIONS_BLESS=1 cargo test --test completions` rewrites the files
//! in completions/ from the binary.

use crate::common;

use crate::common::*;
use std::path::Path;

const FILES: [(&str, &str); 3] = [
    ("zsh", "completions/_ai-sessctl"),
    ("bash", "completions/ai-sessctl.bash"),
    ("fish", "completions/ai-sessctl.fish"),
];

#[test]
fn shipped_scripts_equal_the_generated_ones() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var("AI_SESSIONS_BLESS").as_deref() == Ok("1");
    for (shell, file) in FILES {
        let generated = env.ok(&["completions", shell]);
        assert!(generated.contains("ai-sessctl"), "{shell}: {generated}");
        assert!(
            generated.contains("COMPLETE"),
            "{shell}: dynamic, calls the binary back"
        );
        let path = root.join(file);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{file}: {e}; run `AI_SESSIONS_BLESS=1 cargo test --test completions`")
        });
        assert!(
            shipped == generated,
            "{file} is out of date; run `AI_SESSIONS_BLESS=1 cargo test --test completions`"
        );
    }
    // The scripts are valid for their shell.
    for (shell, file) in [
        ("bash", "completions/ai-sessctl.bash"),
        ("zsh", "completions/_ai-sessctl"),
    ] {
        if Path::new(&format!("/usr/bin/{shell}")).exists()
            || Path::new(&format!("/bin/{shell}")).exists()
        {
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg(root.join(file))
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell} -n {file}: {}", stderr(&out));
        }
    }
}

/// What bash would get for `ai-sessctl <words…>` with the cursor on the
/// last word (clap_complete's bash adapter: COMPLETE=bash, the index of the
/// word in _CLAP_COMPLETE_INDEX, the words after `--`).
fn complete(env: &Env, words: &[&str]) -> Vec<String> {
    let out = env
        .cmd()
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", words.len().to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .env("_CLAP_IFS", "\n")
        .arg("--")
        .arg("ai-sessctl")
        .args(words)
        .output()
        .unwrap();
    assert!(out.status.success(), "{words:?}: {}", stderr(&out));
    assert!(
        stderr(&out).is_empty(),
        "a completion must print no errors: {}",
        stderr(&out)
    );
    stdout(&out).lines().map(str::to_owned).collect()
}

fn plant(env: &Env) {
    let inst = |id: &str, status: &str, port: u16| {
        let (project, mode) = id.rsplit_once('-').unwrap();
        serde_json::json!({
            "id": id, "project_path": format!("/src/{project}"), "project_name": project,
            "mode": mode, "status": status, "port": port,
        })
    };
    let reg = serde_json::json!({"instances": {
        "api-claude": inst("api-claude", "stopped", 9001),
        "api-gemini": inst("api-gemini", "error", 9002),
        "web-claude": inst("web-claude", "stopped", 9003),
    }});
    std::fs::write(env.state().join("registry.json"), reg.to_string()).unwrap();
}

#[test]
fn instance_ids_complete_from_the_registry() {
    let env = Env::new();
    plant(&env);
    let got = complete(&env, &["stop", ""]);
    for id in ["api-claude", "api-gemini", "web-claude"] {
        assert!(
            got.contains(&id.to_owned()),
            "stop <TAB> lacks {id}: {got:?}"
        );
    }
    let got = complete(&env, &["stop", "api"]);
    let ids: Vec<&String> = got.iter().filter(|c| !c.starts_with('-')).collect();
    assert_eq!(ids, ["api-claude", "api-gemini"], "prefix filter: {got:?}");
    for sub in ["show", "logs", "attach", "rm", "restart"] {
        let got = complete(&env, &[sub, "web"]);
        assert_eq!(got, ["web-claude"], "{sub} web<TAB>");
    }
    // `diff [ID]` completes ids too.
    assert_eq!(
        complete(&env, &["diff", "web"]),
        ["web-claude"],
        "diff web<TAB>"
    );
    // An unreadable registry completes nothing, silently.
    std::fs::write(env.state().join("registry.json"), "{broken").unwrap();
    let got = complete(&env, &["stop", ""]);
    assert!(got.iter().all(|c| c.starts_with('-')), "{got:?}");
    std::fs::remove_file(env.state().join("registry.json")).unwrap();
}

/// The shipped bash script end to end: source it, fill COMP_WORDS as bash
/// does on TAB, call the registered function, read COMPREPLY.
#[test]
fn bash_script_completes_ids_through_the_binary() {
    let env = Env::new();
    plant(&env);
    let bin_dir = Path::new(BIN).parent().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/ai-sessctl.bash");
    let generated = env.state().join("gen.bash");
    std::fs::write(&generated, env.ok(&["completions", "bash"])).unwrap();
    let source = if script.exists() { script } else { generated };
    let out = std::process::Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 9
            func=$(complete -p ai-sessctl | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
            [ -n "$func" ] || exit 8
            COMP_WORDS=(ai-sessctl stop api)
            COMP_CWORD=2
            COMP_TYPE=9
            COMP_LINE="ai-sessctl stop api"
            COMP_POINT=${#COMP_LINE}
            "$func" ai-sessctl api stop
            printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&source)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("AI_SESSIONS_HOME", env.state())
        .env_remove("COMPLETE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    let got: Vec<String> = stdout(&out).lines().map(|l| l.trim().to_owned()).collect();
    assert_eq!(got, ["api-claude", "api-gemini"], "{}", stderr(&out));
}

#[test]
fn agents_and_subcommands_complete() {
    let env = Env::new();
    let got = complete(&env, &["run", ""]);
    assert!(got.contains(&"claude".to_owned()), "{got:?}");
    assert!(got.contains(&"gemini".to_owned()), "{got:?}");
    assert_eq!(complete(&env, &["run", "g"]), ["gemini"]);
    // Agents are config: a new one completes as soon as it is configured.
    env.write_config("[agents.codex]\ncommand = [\"codex\"]\n");
    let got = complete(&env, &["run", ""]);
    assert!(got.contains(&"codex".to_owned()), "{got:?}");
    let got = complete(&env, &["start", "--mode", ""]);
    assert!(got.contains(&"codex".to_owned()), "{got:?}");

    let got = complete(&env, &["li"]);
    assert_eq!(got, ["list"]);
    let got = complete(&env, &[""]);
    for sub in [
        "run", "start", "stop", "list", "show", "config", "events", "port", "registry",
    ] {
        assert!(
            got.contains(&sub.to_owned()),
            "top level lacks {sub}: {got:?}"
        );
    }
    assert!(
        !got.contains(&"shell-exit".to_owned()),
        "hidden commands stay hidden"
    );
    let got = complete(&env, &["list", "--status", ""]);
    assert_eq!(got, ["running", "stopped", "all"]);
}

/// `-w <TAB>` offers the worktrees made for the repository you are in.
#[test]
fn worktree_names_complete_in_a_repository() {
    let env = Env::new();
    let repo = env.project("wtc");
    common::repo_with_worktrees(&repo, &["feat", "fix"]);
    let complete_in = |words: &[&str]| {
        let out = env
            .cmd()
            .current_dir(&repo)
            .env("COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", words.len().to_string())
            .env("_CLAP_COMPLETE_COMP_TYPE", "9")
            .env("_CLAP_COMPLETE_SPACE", "true")
            .env("_CLAP_IFS", "\n")
            .arg("--")
            .arg("ai-sessctl")
            .args(words)
            .output()
            .unwrap();
        assert!(
            out.status.success() && stderr(&out).is_empty(),
            "{}",
            stderr(&out)
        );
        stdout(&out).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    // The names first; `-w` alone is a new worktree, so options follow.
    let got = complete_in(&["run", "claude", "-w", ""]);
    assert_eq!(got[..2], ["feat", "fix"], "{got:?}");
    assert!(got[2..].iter().all(|c| c.starts_with('-')), "{got:?}");
    assert_eq!(complete_in(&["start", "--worktree", "fe"]), ["feat"]);
    // What the agent functions' completion asks for.
    let out = env
        .cmd()
        .current_dir(&repo)
        .args(["worktree", "list", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "feat\nfix\n");
}

/// `land <TAB>` offers ids, `land ID --<TAB>` its flags.
#[test]
fn land_completes_ids_and_its_flags() {
    let env = Env::new();
    plant(&env);
    let got = complete(&env, &["la"]);
    assert_eq!(got, ["land"]);
    assert_eq!(complete(&env, &["land", "web"]), ["web-claude"]);
    let got = complete(&env, &["land", "web-claude", "--"]);
    for flag in [
        "--merge",
        "--squash",
        "--rebase",
        "--pr",
        "--commit",
        "--remove-worktree",
        "--stop",
        "--yes",
    ] {
        assert!(got.contains(&flag.to_owned()), "land lacks {flag}: {got:?}");
    }
}
