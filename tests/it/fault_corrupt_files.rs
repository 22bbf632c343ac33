//! Fault injection, part 5: corrupt, truncated, wrongly typed, binary and
//! oversized `config.toml`, `configs/<id>.toml` and `prompt.tsv` (the
//! registry's own corruption cases are in registry_corrupt.rs).
//!
//! Config files: every command that reads one fails with one error line
//! naming the file; nothing overwrites it; nothing is half-started.
//! prompt.tsv is derived state: the prompt hooks of bash and zsh survive any
//! content (no error, no hang, nothing executed), and the next registry
//! change rewrites it.

use crate::common::{stderr, stdout, Env, BIN};
use crate::tmux_support::Shell;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// (label, file content, words the error must contain besides the path).
fn bad_configs() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let mut big = b"[global]\nmax_instances = 3\n".to_vec();
    while big.len() <= (1 << 20) + 10 {
        big.extend_from_slice(b"# padding padding padding padding padding padding\n");
    }
    vec![
        (
            "truncated string",
            b"[resources.memory]\nlimit = \"1G".to_vec(),
            vec![":2"],
        ),
        (
            "truncated header",
            b"[global]\nmax_instances = 3\n[agents.cla".to_vec(),
            vec![":3"],
        ),
        (
            "port_range as a string",
            b"[networking]\nport_range = \"9000-9999\"\n".to_vec(),
            vec![":2", "port_range"],
        ),
        (
            "command as a string",
            b"[agents.claude]\ncommand = \"claude --yolo\"\n".to_vec(),
            vec!["command"],
        ),
        (
            "cpu limit as a bool",
            b"[resources.cpu]\nlimit = true\n".to_vec(),
            vec![":2", "limit"],
        ),
        (
            "binary, not UTF-8",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00garbage".to_vec(),
            vec!["UTF-8"],
        ),
        (
            "NUL in UTF-8",
            b"[global]\nmax_instances = 3\x00\n".to_vec(),
            vec![":2"],
        ),
        ("oversized", big, vec!["larger than", "MiB"]),
    ]
}

/// Runs and expects a clean failure naming `file`; returns stderr.
fn fails_naming(env: &Env, args: &[&str], file: &Path, words: &[&str], label: &str) -> String {
    let t = Instant::now();
    let out = env.run(args);
    let took = t.elapsed();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{label}: {args:?} succeeded: {}",
        stdout(&out)
    );
    assert!(
        matches!(out.status.code(), Some(1 | 5)),
        "{label}: {args:?}: exit {:?}: {err}",
        out.status.code()
    );
    assert!(!err.contains("panicked"), "{label}: {args:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{label}: {args:?}: one error line: {err}");
    assert!(
        errors[0].starts_with("ai-sessctl: error:"),
        "{label}: {args:?}: {err}"
    );
    assert!(
        errors[0].contains(file.to_str().unwrap()),
        "{label}: {args:?}: the error names {}: {err}",
        file.display()
    );
    for w in words {
        assert!(
            errors[0].contains(w),
            "{label}: {args:?}: no {w:?} in: {err}"
        );
    }
    assert!(
        errors[0].len() < 600,
        "{label}: the error line stays short: {} bytes",
        errors[0].len()
    );
    assert!(
        took < Duration::from_secs(3),
        "{label}: {args:?} took {took:?}"
    );
    err
}

#[test]
fn broken_global_config_is_named_and_never_overwritten() {
    let env = Env::new();
    let path = env.state().join("config.toml");
    let proj = env.project(&env.unique("cfg"));
    let mut cases = bad_configs();
    cases.push(("a directory", Vec::new(), vec!["directory"]));
    for (label, bytes, words) in cases {
        if label == "a directory" {
            std::fs::remove_file(&path).unwrap();
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, &bytes).unwrap();
        }
        for args in [
            &["config", "get", "--global", "global.max_instances"][..],
            &["config", "get", "p-claude", "resources.cpu.limit"],
            &["config", "set", "--global", "global.max_instances", "4"],
            &["port", "alloc"],
            &[
                "start",
                proj.to_str().unwrap(),
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                "host",
            ],
        ] {
            fails_naming(&env, args, &path, &words, label);
            if label == "a directory" {
                assert!(path.is_dir(), "{label}: {args:?} replaced the directory");
            } else {
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    bytes,
                    "{label}: {args:?} changed config.toml"
                );
            }
        }
        assert!(
            env.registry()["instances"]
                .as_object()
                .is_none_or(|m| m.is_empty()),
            "{label}: something was registered: {}",
            env.registry()
        );
        // A new shell still starts: init falls back to the default agents,
        // saying which file is wrong.
        let out = env.run(&["init", "bash"]);
        assert!(out.status.success(), "{label}: init: {}", stderr(&out));
        assert!(stdout(&out).contains("_ai_sessions_precmd"), "{label}");
        assert!(
            stderr(&out).contains(path.to_str().unwrap()),
            "{label}: init warns naming the file: {}",
            stderr(&out)
        );
        if label == "a directory" {
            std::fs::remove_dir(&path).unwrap();
        }
    }
    // Fixed by hand: everything works again.
    env.write_config("");
    env.ok(&["config", "set", "--global", "global.max_instances", "4"]);
    env.ok(&["port", "alloc"]);
}

#[test]
fn broken_instance_config_is_named_and_never_overwritten() {
    let env = Env::new();
    let name = env.unique("inst");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    let dir = env.state().join("configs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{id}.toml"));
    for (label, bytes, words) in bad_configs() {
        std::fs::write(&path, &bytes).unwrap();
        for args in [
            &["config", "get", &id, "resources.cpu.limit"][..],
            // Another key: setting the broken one itself would repair it.
            &["config", "set", &id, "health.max_retries", "2"],
            &[
                "start",
                proj.to_str().unwrap(),
                "--mode",
                "claude",
                "--detach",
                "--runtime",
                "host",
            ],
        ] {
            fails_naming(&env, args, &path, &words, label);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{label}: {args:?} changed {id}.toml"
            );
        }
        assert!(
            env.instance(&id).is_null(),
            "{label}: a half-started entry: {}",
            env.registry()
        );
        // Other scopes are not affected by one broken instance file.
        env.ok(&["config", "get", "--global", "global.max_instances"]);
        env.ok(&["config", "get", "other-claude", "resources.cpu.limit"]);
        env.ok(&["port", "alloc"]);
    }
}

/// Runs a shell snippet with a deadline; kills it when it hangs.
fn shell(env: &Env, sh: &str, script: &str, cwd: &Path, limit: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = Command::new(sh)
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("AI_SESSIONS_HOME", env.state())
        .env("PWD", cwd)
        .env("LANG", "C.UTF-8")
        .env_remove("AI_SESSIONS_PROMPT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while t.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (out, t.elapsed())
}

#[test]
fn garbage_prompt_file_never_breaks_the_prompt_and_is_rewritten() {
    let env = Env::new();
    let marker = env.projects.path().join("pwned");
    let m = marker.to_str().unwrap();
    let prompt = env.state().join("prompt.tsv");
    // Bytes of no particular shape, deterministic.
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push((x >> 24) as u8);
    }
    let hostile = format!(
        "/\tx-claude\t$(touch {m})\trunning\t1\n\
         /\ty-claude\t`touch {m}`%F{{red}}\\e[31m\trunning\t2\n\
         \t\t\t\t\n\
         \tz-claude\tclaude\trunning\t3\n\
         /\tw-claude\tclaude\trunning\n\
         only one field\n\
         {}\t{}\t{}\n",
        "/".repeat(5000),
        "a".repeat(5000),
        "b".repeat(5000)
    );
    let mut one_line = vec![b'a'; 8 << 20];
    one_line.push(b'\n');
    let mut many = Vec::new();
    while many.len() < 2 << 20 {
        many.extend_from_slice(b"/nowhere\tq-claude\tclaude\trunning\t9000\n");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary noise", noise),
        ("hostile fields", hostile.into_bytes()),
        (
            "NUL bytes",
            b"/\0\tx\0-claude\tcl\0aude\trunning\t1\n\0\0\0".to_vec(),
        ),
        ("8 MiB single line", one_line),
        ("2 MiB of lines", many),
        ("empty", Vec::new()),
        // No project path: matches no directory (zsh once matched all).
        ("empty path", b"\tz-claude\tclaude\trunning\t3\n".to_vec()),
    ];
    let cwd = env.project("work");
    let bash = format!(
        "eval \"$({BIN} init bash)\" || exit 90; _ai_sessions_precmd; rc=$?; \
         printf '[%s]\\n' \"$AI_SESSIONS_PROMPT\"; printf '<%s>\\n' \"${{PS1@P}}\"; exit $rc"
    );
    let zsh = format!(
        "setopt prompt_subst; eval \"$({BIN} init zsh)\" || exit 90; _ai_sessions_precmd; rc=$?; \
         print -r -- \"[$AI_SESSIONS_PROMPT]\"; print -r -- \"<${{(e)RPROMPT}}>\"; exit $rc"
    );
    let mut shells = vec![(Shell::Bash.name(), bash)];
    if Shell::Zsh.installed() {
        shells.push((Shell::Zsh.name(), zsh));
    } else {
        eprintln!("*** fault_corrupt_files: zsh not installed; bash only ***");
    }
    let mut timings = Vec::new();
    for (label, bytes) in &cases {
        for (sh, script) in &shells {
            std::fs::write(&prompt, bytes).unwrap();
            let (out, took) = shell(&env, sh, script, &cwd, Duration::from_secs(20));
            let text = stdout(&out);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{sh}/{label}: the hook failed or hung ({took:?}): {}{}",
                text,
                stderr(&out)
            );
            let seg = text.lines().next().unwrap_or("");
            assert!(
                seg.starts_with('[') && seg.ends_with(']'),
                "{sh}/{label}: {text}"
            );
            assert!(
                seg.len() < 200,
                "{sh}/{label}: the prompt segment grew to {} bytes: {}",
                seg.len(),
                &seg[..seg.len().min(300)]
            );
            assert!(
                !seg.chars().any(|c| c.is_control() && c != '\u{1b}'),
                "{sh}/{label}: control characters in the prompt: {seg:?}"
            );
            assert!(
                !marker.exists(),
                "{sh}/{label}: prompt.tsv content was executed"
            );
            if *label == "empty path" {
                assert!(!seg.contains("claude"), "{sh}/{label}: {seg}");
            }
            timings.push(format!("{sh}/{label} {:.2}s", took.as_secs_f64()));
        }
    }

    // The next registry change replaces the garbage with the real state.
    std::fs::write(&prompt, b"\xff\xfegarbage\n").unwrap();
    env.ok(&["port", "alloc", "--for", "a-claude"]);
    assert_eq!(std::fs::read(&prompt).unwrap(), b"", "prompt.tsv rewritten");
    // `ai-sessctl prompt` reads the registry, not prompt.tsv.
    std::fs::write(&prompt, b"\xff\xfegarbage\n").unwrap();
    let out = env.run_in(&cwd, &["prompt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("fault_corrupt_files: prompt hooks: {}", timings.join(", "));
}
