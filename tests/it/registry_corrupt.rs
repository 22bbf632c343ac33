//! A registry that does not parse is refused, explained and never touched;
//! a seed-format registry loads and keeps what it does not know; state
//! files are private whatever the umask.

use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// A registry as a user of an older version might have: pretty-printed, so
/// errors land on known lines.
fn pretty_registry(status: &str, port: &str) -> String {
    format!(
        r#"{{
  "version": 1,
  "instances": {{
    "a-claude": {{
      "id": "a-claude",
      "project_path": "/src/a",
      "project_name": "a",
      "mode": "claude",
      "status": {status},
      "port": {port}
    }}
  }}
}}
"#
    )
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

struct Snapshot {
    bytes: Vec<u8>,
    mtime: (i64, i64),
    ino: u64,
}

fn snapshot(path: &Path) -> Snapshot {
    let m = std::fs::metadata(path).unwrap();
    Snapshot {
        bytes: std::fs::read(path).unwrap(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ino: m.ino(),
    }
}

/// Writes `bytes` as the registry and checks that every command refuses it
/// the same way and leaves it alone. `wants` must all appear in the error.
fn assert_refused(case: &str, bytes: &[u8], wants: &[&str]) {
    let env = Env::new();
    let path = env.state().join("registry.json");
    std::fs::write(&path, bytes).unwrap();
    let _cleanup = RemoveOnDrop(path.clone());
    let before = snapshot(&path);
    let path_text = path.display().to_string();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["port", "alloc"],
        &["port", "alloc", "--for", "b-claude"],
        &["show", "a-claude"],
        &["registry", "check"],
    ] {
        let out = env.run(args);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{case}: `{}` should fail with 5, got {:?}:\n{err}",
            args.join(" "),
            out.status.code()
        );
        assert!(stdout(&out).is_empty(), "{case}: stdout: {}", stdout(&out));
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("ai-sessctl: error: "), "{case}: {err}");
        assert!(
            first.contains(&path_text),
            "{case}: error does not name the file: {first}"
        );
        for w in wants {
            assert!(first.contains(w), "{case}: error lacks {w:?}: {first}");
        }
        assert!(
            !first.contains("InstanceId("),
            "{case}: debug output in {first}"
        );
        // One error line; at most a hint under it. Nothing panicked.
        let others: Vec<&str> = err
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("  hint: "))
            .collect();
        assert!(others.is_empty(), "{case}: extra stderr lines: {others:?}");
        assert!(
            first.chars().count() < 400,
            "{case}: error line too long: {}",
            first.len()
        );
        let after = snapshot(&path);
        assert!(
            after.bytes == before.bytes,
            "{case}: `{}` changed the file",
            args.join(" ")
        );
        assert_eq!(
            after.mtime,
            before.mtime,
            "{case}: `{}` touched the file",
            args.join(" ")
        );
        assert_eq!(
            after.ino,
            before.ino,
            "{case}: `{}` replaced the file",
            args.join(" ")
        );
    }
    // Nothing was moved aside or written next to it either.
    let names: Vec<String> = std::fs::read_dir(env.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("registry.json") && n != "registry.json")
        .collect();
    assert!(names.is_empty(), "{case}: {names:?}");
}

/// Removes the planted file before the harness's Env (which reads the
/// registry when dropped) goes, also when an assertion failed.
struct RemoveOnDrop(std::path::PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn truncated_json_is_refused_with_its_position() {
    assert_refused(
        "cut object",
        br#"{"instances":"#,
        &["line 1 column 13", "EOF"],
    );
    let full = pretty_registry("\"stopped\"", "9001");
    let half = &full.as_bytes()[..full.len() / 2];
    // serde_json counts the line after a trailing newline.
    let last_line = half.iter().filter(|b| **b == b'\n').count() + 1;
    assert_refused("cut in half", half, &[&format!("line {last_line} column")]);
}

#[test]
fn wrong_types_are_refused_at_their_line() {
    let text = pretty_registry("\"sleeping\"", "9001");
    let line = line_of(&text, "sleeping");
    assert_refused(
        "unknown status",
        text.as_bytes(),
        &[&format!("line {line} column"), "sleeping"],
    );
    let text = pretty_registry("\"stopped\"", "\"9001\"");
    let line = line_of(&text, "\"port\"");
    assert_refused(
        "port as a string",
        text.as_bytes(),
        &[&format!("line {line} column"), "9001"],
    );
    let text = pretty_registry("\"stopped\"", "80");
    assert_refused(
        "privileged port",
        text.as_bytes(),
        &[&format!("line {line} column"), "port 80"],
    );
    assert_refused(
        "instances is a list",
        br#"{"instances": []}"#,
        &["line 1 column"],
    );
    assert_refused(
        "id that is a path",
        pretty_registry("\"stopped\"", "9001")
            .replace("\"id\": \"a-claude\"", "\"id\": \"../../etc-claude\"")
            .as_bytes(),
        &["line 5 column", "invalid instance id"],
    );
}

#[test]
fn key_and_id_disagreeing_is_refused() {
    let text = pretty_registry("\"stopped\"", "9001")
        .replace("\"id\": \"a-claude\"", "\"id\": \"b-claude\"");
    assert_refused(
        "key/id mismatch",
        text.as_bytes(),
        &["\"a-claude\"", "\"b-claude\""],
    );
}

#[test]
fn empty_and_blank_files_are_refused() {
    assert_refused("empty", b"", &["empty"]);
    assert_refused("blank", b"  \n\n", &["empty"]);
}

#[test]
fn non_utf8_bytes_are_refused() {
    let text = pretty_registry("\"stopped\"", "9001").replace("\"/src/a\"", "\"/src/\u{1}\"");
    let bytes = text.replace('\u{1}', "\u{fffd}").into_bytes();
    // Put raw 0xff 0xfe where the replacement character was.
    let at = bytes
        .windows(3)
        .position(|w| w == "\u{fffd}".as_bytes())
        .unwrap();
    let mut raw = bytes[..at].to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(&bytes[at + 3..]);
    let line = line_of(&text, "/src/");
    assert_refused(
        "non-UTF-8 in a string",
        &raw,
        &[&format!("line {line} column")],
    );
    assert_refused(
        "binary garbage",
        &[0xff, 0xfe, 0x00, 0x01],
        &["line 1 column 1"],
    );
}

#[test]
fn a_huge_file_is_refused_without_parsing() {
    // 10 MB of valid JSON: refused by size, quickly.
    let mut big = br#"{"instances": {}, "padding": ""#.to_vec();
    big.resize(10 << 20, b'x');
    big.extend_from_slice(b"\"}\n");
    let t = std::time::Instant::now();
    assert_refused("10 MB", &big, &["larger than"]);
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
}

#[test]
fn a_newer_format_is_refused() {
    let text = pretty_registry("\"stopped\"", "9001").replace("\"version\": 1", "\"version\": 99");
    assert_refused("version 99", text.as_bytes(), &["newer"]);
}

/// The example registry from the seed's architecture document, verbatim,
/// plus fields this version does not know.
const SEED: &str = r#"{
  "future_top_level": {"keep": ["me", 1]},
  "instances": {
    "project-a-claude": {
      "id": "project-a-claude",
      "project_path": "/Users/dev/project-a",
      "project_name": "project-a",
      "mode": "claude",
      "status": "running",
      "pid": 12345,
      "container_id": "abc123def456",
      "port": 9001,
      "socket_path": "/Users/dev/.ai-sessions/sockets/project-a-claude.sock",
      "resources": {
        "memory_limit": "1Gi",
        "cpu_limit": "500m",
        "memory_usage": "512Mi",
        "cpu_usage": "15%"
      },
      "timestamps": {
        "created": "2025-12-11T10:30:00Z",
        "started": "2025-12-11T10:30:05Z",
        "last_health_check": "2025-12-11T10:35:00Z"
      },
      "config": {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 4096,
        "temperature": 0.7
      },
      "gpu": "a100",
      "labels": {"team": "infra"}
    }
  }
}
"#;

#[test]
fn a_seed_format_registry_loads_and_keeps_unknown_fields() {
    let env = Env::new();
    let path = env.state().join("registry.json");
    std::fs::write(&path, SEED).unwrap();

    let report = env.ok(&["registry", "check"]);
    assert!(report.contains("OK"), "{report}");
    assert!(report.contains("1 instances"), "{report}");
    assert!(
        report.contains("seed"),
        "a file without version is the seed format: {report}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        SEED,
        "check must not write"
    );

    // A write keeps everything this version does not know about.
    let port: u16 = env
        .ok(&["port", "alloc", "--for", "b-claude"])
        .trim()
        .parse()
        .unwrap();
    assert_ne!(port, 9001);
    let reg = env.registry();
    assert_eq!(reg["version"], 1, "a write records the format version");
    assert_eq!(
        reg["future_top_level"],
        serde_json::json!({"keep": ["me", 1]})
    );
    let inst = &reg["instances"]["project-a-claude"];
    assert_eq!(inst["gpu"], "a100");
    assert_eq!(inst["labels"]["team"], "infra");
    assert_eq!(inst["port"], 9001);
    assert_eq!(inst["container_id"], "abc123def456");
    assert_eq!(inst["resources"]["memory_usage"], "512Mi");
    assert_eq!(
        inst["timestamps"]["last_health_check"],
        "2025-12-11T10:35:00Z"
    );
    assert_eq!(inst["config"]["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(
        reg["reserved_ports"][port.to_string()]["instance"],
        "b-claude"
    );

    // And it lists.
    let out = env.run(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list --json: {e}: {}{}", stdout(&out), stderr(&out)));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], "project-a-claude");
    assert_eq!(rows[0]["project_path"], "/Users/dev/project-a");
    assert_eq!(rows[0]["port"], 9001);
    assert_eq!(rows[0]["gpu"], "a100");
    let listed = env.ok(&["list"]);
    assert!(listed.contains("project-a-claude"), "{listed}");
    // Whatever list corrected, the unknown fields are still there.
    let reg = env.registry();
    assert_eq!(reg["future_top_level"]["keep"][0], "me");
    assert_eq!(reg["instances"]["project-a-claude"]["gpu"], "a100");
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn state_files_are_private_even_with_umask_000() {
    let env = Env::new();
    // A state dir the binary creates itself, below a loose parent.
    let state = env.state().join("nested").join("state");
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.env("AI_SESSIONS_HOME", &state).args(args);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    let range = format!("[{}, {}]", env.port_base, env.port_base + 99);
    run(&["config", "set", "--global", "networking.port_range", &range]);
    run(&["port", "alloc", "--for", "p-claude"]);
    run(&["config", "set", "p-claude", "resources.cpu.limit", "250m"]);

    assert_eq!(mode_of(&state), 0o700, "state dir");
    for dir in ["logs", "configs"] {
        assert_eq!(mode_of(&state.join(dir)), 0o700, "{dir}/");
    }
    for file in [
        "registry.json",
        "registry.lock",
        "prompt.tsv",
        "config.toml",
        "configs/p-claude.toml",
        "logs/session-manager.log",
    ] {
        assert_eq!(mode_of(&state.join(file)), 0o600, "{file}");
    }
    // A state dir created readable by others is tightened on first use
    // (one others may write is refused: sandbox_state_trust.rs).
    let loose = env.state().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd()
        .env("AI_SESSIONS_HOME", &loose)
        .args(["port", "alloc", "--preferred", &env.port_base.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode_of(&loose), 0o700, "loose state dir tightened");
}
