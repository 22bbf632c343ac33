//! `events`: the event log, coloured for people or raw JSON lines.

use super::Ctx;
use crate::config::units::Dur;
use crate::error::{Error, Result};
use crate::events::{format_human, Event, Level};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};

pub fn events(
    ctx: &Ctx,
    follow: bool,
    json: bool,
    since: Option<Dur>,
    level: Option<Level>,
) -> Result<u8> {
    let path = ctx.dirs.event_log();
    let cutoff =
        since.map(|d| chrono::Utc::now() - chrono::Duration::from_std(d.0).unwrap_or_default());
    let color = crate::output::color_stdout();
    let show = |line: &str, out: &mut dyn Write| -> std::io::Result<()> {
        let Ok(e) = serde_json::from_str::<Event>(line) else {
            return Ok(());
        };
        if cutoff.is_some_and(|c| e.timestamp < c) || level.is_some_and(|l| e.level < l) {
            return Ok(());
        }
        if json {
            writeln!(out, "{}", line.trim_end())
        } else {
            writeln!(out, "{}", format_human(&e, color))
        }
    };
    print_log(&path, follow, show)
}

/// Prints each whole line of the JSON-lines log at `path` through `show`;
/// `follow` keeps reading what is appended (and starts over when the log
/// was pruned in place). Shared by `events` and `net log`.
pub(super) fn print_log(
    path: &std::path::Path,
    follow: bool,
    mut show: impl FnMut(&str, &mut dyn Write) -> std::io::Result<()>,
) -> Result<u8> {
    let mut offset = 0u64;
    let stdout = std::io::stdout();
    loop {
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // pruned in place: start over
                }
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(path, e))?;
                let mut reader = BufReader::new(f);
                let mut out = stdout.lock();
                let mut line = String::new();
                loop {
                    line.clear();
                    let n = reader
                        .read_line(&mut line)
                        .map_err(|e| Error::io(path, e))?;
                    if n == 0 || !line.ends_with('\n') {
                        break; // a partial line is read again next round
                    }
                    offset += n as u64;
                    if show(&line, &mut out).is_err() {
                        return Ok(0); // stdout closed (e.g. `| head`)
                    }
                }
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
