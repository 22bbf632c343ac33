//! `logs`: what an agent's screen showed, as text (its terminal stream
//! played into an emulator: [`crate::core::untrusted::screen`]), live or as
//! saved when it ended. `--raw` gives the stream itself, for those who ask.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::untrusted::screen::{Screen, DEFAULT_COLS};
use crate::lifecycle::docker::DockerEngine;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub fn logs(
    ctx: &Ctx,
    id: Option<InstanceId>,
    follow: bool,
    tail: Option<usize>,
    raw: bool,
) -> Result<u8> {
    let id = crate::service::control::given_or_here(ctx, id)?;
    if raw {
        return copy(ctx, &id, follow, tail, &mut std::io::stdout());
    }
    let size = std::io::stdout()
        .is_terminal()
        .then(crate::engine::attach::window_size)
        .flatten();
    let cols = size.map_or(DEFAULT_COLS, |(_, c)| c);
    let mut shown = Rendered {
        screen: Screen::new(cols),
        follow,
        rows: size.map(|(r, _)| r),
        tail,
        printed: None,
        painted: Instant::now(),
    };
    let code = copy(ctx, &id, follow, None, &mut shown)?;
    shown.paint();
    Ok(code)
}

/// Writes the output of `id` to `out`: a live container's from the engine,
/// else what was saved when it ended.
fn copy(
    ctx: &Ctx,
    id: &InstanceId,
    follow: bool,
    tail: Option<usize>,
    out: &mut (dyn Write + Send),
) -> Result<u8> {
    let reg = crate::lifecycle::refresh(ctx)?;
    let inst = reg.get(id);
    if let Some(i) = inst.filter(|i| i.status.is_live()) {
        crate::lifecycle::reachable(i)?;
    }
    if let Some(cid) = inst
        .and_then(|i| i.container_id.clone())
        .filter(|_| inst.is_some_and(|i| i.status.is_live()))
    {
        let engine = DockerEngine::connect()?;
        match engine.block_on(engine.copy_logs(&cid, follow, tail, out)) {
            Err(Error::NotFound(_)) => {}
            other => return other.map(|_| 0),
        }
    }
    let path = ctx.dirs.instance_log(id);
    // Kept (`auto_cleanup = false`) and not saved: the container still
    // holds the output.
    let kept = inst
        .filter(|i| !i.status.is_live())
        .and_then(|i| i.container_id.clone())
        .filter(|_| std::fs::symlink_metadata(&path).is_err());
    if let Some(cid) = kept {
        if let Ok(engine) = DockerEngine::connect() {
            match engine.block_on(engine.copy_logs(&cid, false, tail, out)) {
                Err(Error::NotFound(_)) => {}
                other => return other.map(|_| 0),
            }
        }
    }
    // Read from the end: the file may hold tens of megabytes.
    match crate::engine::logfile::copy_tail(&path, tail, out) {
        Ok(true) => {
            if follow {
                eprintln!("({id} is not running; that was its saved output)");
            }
            Ok(0)
        }
        Err(e) => Err(e),
        Ok(false) if inst.is_some() => Err(Error::NotFound(format!(
            "no output recorded for {id}{}",
            if inst.is_some_and(|i| i.runtime == Some(crate::state::registry::RuntimeKind::Host)) {
                " (a foreground host instance writes to its own terminal)"
            } else {
                ""
            }
        ))),
        Ok(false) => Err(Error::not_found(id)),
    }
}

/// Output rendered as it comes. Without `follow`, the text is printed once
/// at the end (its last `tail` lines). Following, it is shown as it
/// changes, at most four times a second: on a terminal the newest lines
/// that fit are redrawn in place; in a pipe each new line is printed once.
struct Rendered {
    screen: Screen,
    follow: bool,
    /// The reader's terminal height, when it is one.
    rows: Option<u16>,
    tail: Option<usize>,
    /// Lines printed to a pipe so far (`None`: nothing shown yet).
    printed: Option<usize>,
    painted: Instant,
}

impl Rendered {
    fn paint(&mut self) {
        let lines = self.screen.lines();
        let mut out = std::io::stdout().lock();
        // A closed pipe (`logs | head`) is the reader's choice.
        let _ = match (self.follow, self.rows) {
            (true, Some(rows)) => {
                let from = lines.len().saturating_sub(usize::from(rows.max(2) - 1));
                write!(out, "\x1b[H\x1b[2J")
                    .and_then(|()| lines[from..].iter().try_for_each(|l| writeln!(out, "{l}")))
            }
            _ => {
                let from = match self.printed {
                    Some(n) => n.min(lines.len()),
                    None => self.tail.map_or(0, |t| lines.len().saturating_sub(t)),
                };
                self.printed = Some(lines.len());
                lines[from..].iter().try_for_each(|l| writeln!(out, "{l}"))
            }
        };
        let _ = out.flush();
        self.painted = Instant::now();
    }
}

impl Write for Rendered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.screen.feed(buf);
        if self.follow && self.painted.elapsed() >= Duration::from_millis(250) {
            self.paint();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
