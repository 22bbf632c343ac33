//! Terminal output helpers: colour only on a TTY without `NO_COLOR`,
//! human durations, and JSON printing.

use std::io::IsTerminal;

pub fn color_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

pub fn color_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

pub fn status_color(s: crate::core::types::Status) -> &'static str {
    use crate::core::types::Status::*;
    match s {
        Running => "32",
        Error => "31",
        Paused => "33",
        Initializing => "36",
        Stopped => "2",
    }
}

/// A plain table (no borders, two spaces between columns) whose columns
/// line up whatever the cells hold (wide characters, colour codes):
/// `right` lists the columns aligned to the right (numbers).
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    use comfy_table::{CellAlignment, ContentArrangement, Table};
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row.iter().map(|c| shown(c)).collect::<Vec<_>>());
    }
    for (n, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if right.contains(&n) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table cell or field made printable (they hold what a box or a repository
/// wrote: a branch, a reason, a health message): every control and bidi
/// character is shown escaped, except a colour (SGR, `ESC [ digits m`) as
/// [`paint`] writes it, which can change nothing but the colour.
pub fn shown(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    let mut rest = cell;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&crate::core::untrusted::printable(&rest[..i]));
        let after = &rest[i + 1..];
        let sgr = after.strip_prefix('[').and_then(|a| {
            let n = a.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            (a[n..].starts_with('m')).then_some(n + 2)
        });
        match sgr {
            Some(n) => {
                out.push_str(&rest[i..i + 1 + n]);
                rest = &after[n..];
            }
            None => {
                out.push_str(&crate::core::untrusted::printable("\x1b"));
                rest = after;
            }
        }
    }
    out.push_str(&crate::core::untrusted::printable(rest));
    out
}

/// How long ago, coarsely: `12s`, `4m`, `2h`, `3d`.
pub fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// Prints `v` as indented JSON; C1 controls, DEL and bidi overrides are
/// escaped too (serde_json leaves them raw), so no field of it can drive
/// the terminal it is printed on.
pub fn print_json(v: &impl serde::Serialize) -> crate::core::error::Result<()> {
    let text = crate::core::untrusted::json::pretty(v)?;
    println!("{text}");
    Ok(())
}

/// Makes a closed stdout or stderr (`ai-sessctl list | head -1`, a reader
/// that quit) end the process quietly, as it ends other Unix tools: by
/// SIGPIPE for a broken pipe, one error line for any other write failure.
/// Rust ignores SIGPIPE and `println!` panics instead; this hook turns just
/// that panic back into the usual behaviour (any thread, any command) and
/// leaves every other panic to the default hook.
pub fn quiet_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let Some(rest) = msg
            .strip_prefix("failed printing to stdout: ")
            .or_else(|| msg.strip_prefix("failed printing to stderr: "))
        else {
            return default(info);
        };
        if rest.contains("os error 32") {
            use nix::sys::signal::{raise, signal, SigHandler, Signal};
            // SAFETY: restoring the default disposition installs no handler.
            unsafe {
                let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
            }
            let _ = raise(Signal::SIGPIPE);
        }
        // Not a pipe (e.g. `>&-`): say so once, where it can still be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "ai-sessctl: error: cannot write output: {rest}"
        );
        std::process::exit(1);
    }));
}

/// Prints what an operation warned about, a line each on stderr; the
/// debugging ones only with `AI_SESSIONS_DEBUG` set.
pub fn warnings(w: crate::core::warning::Warnings) {
    for w in w {
        warnings_one(&w);
    }
}

/// Prints one warning (a debugging one only with `AI_SESSIONS_DEBUG` set).
pub fn warnings_one(w: &crate::core::warning::Warning) {
    if w.loudness == crate::core::warning::Loudness::Warn
        || std::env::var_os("AI_SESSIONS_DEBUG").is_some()
    {
        eprintln!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_keep_our_colours_and_nothing_else() {
        let ours = paint("running", "32", true);
        assert_eq!(shown(&ours), ours);
        assert_eq!(
            shown("x\x1b]0;t\x07\u{9b}2J\u{202e}y\x1b[2J"),
            "x\\x1b]0;t\\x07\\u{9b}2J\\u{202e}y\\x1b[2J"
        );
        let t = table(&["A"], vec![vec!["b\x1b[2Jc".into()]], &[]);
        assert!(!t.contains('\x1b'), "{t:?}");
    }
}
