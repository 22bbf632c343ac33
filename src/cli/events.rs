//! `events`: the event log (with every egress proxy's own log), coloured
//! for people or JSON lines; every string made safe for a terminal.

use super::Ctx;
use crate::core::error::Result;
use crate::state::config::units::Dur;
use crate::state::events::{format_human, Event, Feed, Level};
use std::io::Write;

pub fn events(
    ctx: &Ctx,
    follow: bool,
    json: bool,
    since: Option<Dur>,
    level: Option<Level>,
) -> Result<u8> {
    let cutoff =
        since.map(|d| chrono::Utc::now() - chrono::Duration::from_std(d.0).unwrap_or_default());
    let color = crate::cli::output::color_stdout();
    print_feed(ctx, follow, |e, out| {
        if cutoff.is_some_and(|c| e.timestamp < c) || level.is_some_and(|l| e.level < l) {
            return Ok(());
        }
        if json {
            print_json_line(e, out)
        } else {
            writeln!(out, "{}", format_human(e, color))
        }
    })
}

/// One event as a JSON line, re-written from what was parsed (never the
/// line as read) with every control and bidi character escaped.
pub(super) fn print_json_line(e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
    match crate::core::untrusted::json::line(e) {
        Ok(text) => writeln!(out, "{text}"),
        Err(_) => Ok(()),
    }
}

/// Prints each event of the state home's [`Feed`] through `show`, oldest
/// first; `follow` keeps printing what is appended. Shared by `events`
/// and `net log`.
pub(super) fn print_feed(
    ctx: &Ctx,
    follow: bool,
    mut show: impl FnMut(&Event, &mut dyn Write) -> std::io::Result<()>,
) -> Result<u8> {
    // Proxies on an engine on another machine log there: copied here
    // first.
    crate::features::egress::remote::pull_all(&ctx.dirs);
    let mut feed = Feed::new(&ctx.dirs);
    let stdout = std::io::stdout();
    loop {
        let batch = feed.next_batch();
        let mut out = stdout.lock();
        for e in &batch {
            if show(e, &mut out).is_err() {
                return Ok(0); // stdout closed (e.g. `| head`)
            }
        }
        if out.flush().is_err() {
            return Ok(0);
        }
        drop(out);
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
