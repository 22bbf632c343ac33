//! Running a user's program (an alert or notification command): no
//! shell, bounded in time, its output discarded.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `argv` without a shell with `env` added and `stdin` written to it;
/// killed after `timeout`. Output is discarded.
pub fn run_program(
    argv: &[String],
    env: &[(&str, String)],
    stdin: &str,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let Some(program) = argv.first() else {
        return Err("alerts.command is empty".into());
    };
    let mut child = Command::new(program)
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} exited with {status}")),
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}
