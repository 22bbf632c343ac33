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

pub fn status_color(s: crate::types::Status) -> &'static str {
    use crate::types::Status::*;
    match s {
        Running => "32",
        Error => "31",
        Paused => "33",
        Initializing => "36",
        Stopped => "2",
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

pub fn print_json(v: &impl serde::Serialize) -> crate::error::Result<()> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| crate::error::Error::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}
