//! `diff [ID]`: what an instance's agent changed, as a unified diff through
//! the user's own pager, `--stat`, or `--json`. The pager and colours are
//! the user's: their global git config and environment, never the
//! repository's (the agent's to write). The diff's text is the agent's:
//! control characters in it are shown escaped; only our own colour
//! escapes reach the terminal.

use super::Ctx;
use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::core::untrusted::git::global_config;
use crate::core::untrusted::printable;
use crate::features::review::diff::{File, Kind, Status};
use crate::service::review::{Report, Scope};
use std::io::{IsTerminal, Write};

/// What `diff` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Patch,
    Stat,
    Json,
}

impl Shape {
    pub fn of(stat: bool, json: bool) -> Shape {
        match (stat, json) {
            (_, true) => Shape::Json,
            (true, _) => Shape::Stat,
            _ => Shape::Patch,
        }
    }
}

/// `fetch [ID] [--uncommitted]`: a clone instance's branch brought home.
pub fn fetch(ctx: &Ctx, id: Option<InstanceId>, uncommitted: bool, json: bool) -> Result<u8> {
    let id = crate::service::control::given_or_here(ctx, id)?;
    let fetched = crate::service::clone::fetch(ctx, &id, uncommitted)?;
    if json {
        super::output::print_json(&fetched)?;
        return Ok(0);
    }
    let short = |r: &str| r.trim_start_matches("refs/remotes/").to_owned();
    println!(
        "{} at {}",
        short(&fetched.branch_ref),
        &fetched.commit[..fetched.commit.len().min(12)]
    );
    match (&fetched.uncommitted_ref, &fetched.uncommitted) {
        (Some(r), Some(c)) => println!("{} at {}", short(r), &c[..c.len().min(12)]),
        _ if uncommitted => println!("nothing uncommitted in {id}"),
        _ => {}
    }
    Ok(0)
}

pub fn diff(ctx: &Ctx, id: Option<InstanceId>, shape: Shape, no_pager: bool) -> Result<u8> {
    let id = crate::service::control::given_or_here(ctx, id)?;
    let report = crate::service::review::diff(ctx, &id)?;
    if shape == Shape::Json {
        super::output::print_json(&report)?;
        return Ok(0);
    }
    eprintln!("{}", about(&report));
    if report.diff.files.is_empty() {
        return Ok(0);
    }
    let pager = if no_pager { None } else { pager() };
    let color = color(pager.is_some());
    let text = match shape {
        Shape::Stat => stat(&report, color),
        _ => patch(&report, color),
    };
    match pager {
        Some(cmd) => through_pager(&cmd, text.as_bytes()),
        None => {
            let mut out = std::io::stdout().lock();
            // A closed reader (`| head`) ends the output, not in an error.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
    Ok(0)
}

/// The line on stderr that says what is compared with what.
fn about(r: &Report) -> String {
    let short = r.diff.base_commit.get(..10).unwrap_or(&r.diff.base_commit);
    let branch = r
        .branch
        .as_deref()
        .map_or_else(|| "HEAD (detached)".to_owned(), printable);
    let what = match r.scope {
        Scope::Worktree => format!(
            "{}: {branch} against {} (merge-base {short}): committed, uncommitted and untracked",
            r.id,
            printable(&r.base)
        ),
        Scope::Checkout => format!(
            "{}: on the main checkout ({branch}): uncommitted changes and untracked files against HEAD ({short})",
            r.id
        ),
        Scope::Clone => format!(
            "{}: {branch} in its box, fetched, against the commit it was sent ({short}): committed, uncommitted and untracked",
            r.id
        ),
    };
    let size = if r.diff.files.is_empty() {
        "no changes".to_owned()
    } else {
        format!(
            "{} file{}, +{} -{}",
            r.diff.files.len(),
            if r.diff.files.len() == 1 { "" } else { "s" },
            r.diff.added,
            r.diff.removed
        )
    };
    let cut = if r.diff.truncated {
        " (too large: cut; see --stat)"
    } else {
        ""
    };
    format!("{what}; {size}{cut}")
}

/// Agent text for the terminal: control characters escaped, tabs kept
/// (they only move the cursor; code is full of them).
fn shown(text: &str) -> String {
    text.split('\t')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\t")
}

fn paint(text: &str, code: &str, on: bool) -> String {
    super::output::paint(text, code, on)
}

/// A unified diff, as `git diff` writes one (so a pager that reads diffs,
/// `delta` or `diff-so-fancy`, understands it).
fn patch(r: &Report, color: bool) -> String {
    let mut out = String::new();
    for f in &r.diff.files {
        let new = shown(&f.path);
        let old = f.old_path.as_deref().map_or_else(|| new.clone(), shown);
        let head = |s: String| paint(&s, "1", color) + "\n";
        out += &head(format!("diff --git a/{old} b/{new}"));
        match f.status {
            Status::Added | Status::Untracked => out += &head("new file mode 100644".to_owned()),
            Status::Deleted => out += &head("deleted file mode 100644".to_owned()),
            Status::Renamed => {
                out += &head(format!("rename from {old}"));
                out += &head(format!("rename to {new}"));
            }
            Status::Modified => {}
        }
        if f.binary {
            out += &format!("Binary files a/{old} and b/{new} differ\n");
            continue;
        }
        if f.hunks.is_empty() {
            continue;
        }
        let from = if matches!(f.status, Status::Added | Status::Untracked) {
            "/dev/null".to_owned()
        } else {
            format!("a/{old}")
        };
        let to = if f.status == Status::Deleted {
            "/dev/null".to_owned()
        } else {
            format!("b/{new}")
        };
        out += &head(format!("--- {from}"));
        out += &head(format!("+++ {to}"));
        hunks(&mut out, f, color);
    }
    out
}

fn hunks(out: &mut String, f: &File, color: bool) {
    for h in &f.hunks {
        // `@@ -1,3 +1,4 @@` ours, what follows (a function's line) the agent's.
        let ranges = format!(
            "@@ -{},{} +{},{} @@",
            h.old_start, h.old_lines, h.new_start, h.new_lines
        );
        let context = h
            .header
            .splitn(3, "@@")
            .nth(2)
            .map(shown)
            .unwrap_or_default();
        *out += &format!("{}{context}\n", paint(&ranges, "36", color));
        for l in &h.lines {
            let (sign, code) = match l.kind {
                Kind::Context => (' ', ""),
                Kind::Add => ('+', "32"),
                Kind::Del => ('-', "31"),
            };
            let line = format!("{sign}{}", shown(&l.text));
            *out += &if code.is_empty() {
                line
            } else {
                paint(&line, code, color)
            };
            out.push('\n');
        }
    }
    if f.truncated {
        *out += &paint("… (cut: too large)\n", "33", color);
    }
}

/// `git diff --stat`'s shape: ` path | 12 +++++---`, then the totals.
fn stat(r: &Report, color: bool) -> String {
    let names: Vec<String> = r
        .diff
        .files
        .iter()
        .map(|f| match &f.old_path {
            Some(o) => format!("{} => {}", shown(o), shown(&f.path)),
            None => shown(&f.path),
        })
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let most = r
        .diff
        .files
        .iter()
        .map(|f| f.added + f.removed)
        .max()
        .unwrap_or(0);
    let digits = most.to_string().len();
    let mut out = String::new();
    for (f, name) in r.diff.files.iter().zip(&names) {
        let pad = width - name.chars().count();
        if f.binary {
            out += &format!(" {name}{} | Bin\n", " ".repeat(pad));
            continue;
        }
        let n = f.added + f.removed;
        // At most 50 marks, in proportion.
        let scale = |k: usize| {
            if most > 50 {
                (k * 50).div_ceil(most)
            } else {
                k
            }
        };
        let bar = paint(&"+".repeat(scale(f.added)), "32", color)
            + &paint(&"-".repeat(scale(f.removed)), "31", color);
        out += &format!(" {name}{} | {n:>digits$} {bar}\n", " ".repeat(pad));
    }
    let files = r.diff.files.len();
    out += &format!(
        " {files} file{} changed, {} insertion{}(+), {} deletion{}(-)\n",
        if files == 1 { "" } else { "s" },
        r.diff.added,
        if r.diff.added == 1 { "" } else { "s" },
        r.diff.removed,
        if r.diff.removed == 1 { "" } else { "s" },
    );
    out
}

/// A git boolean: `Some(true|false)`, or none for anything else (then it
/// is a command, for `pager.<cmd>`).
fn git_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

/// The user's pager, as git chooses one, from their global config and
/// environment only: `pager.diff` (off, or a command), then `$GIT_PAGER`,
/// `core.pager`, `$PAGER`, then `less`. None when stdout is no terminal.
fn pager() -> Option<String> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let by_command = global_config("pager.diff");
    let cmd = match by_command.as_deref().map(|v| (v, git_bool(v))) {
        Some((_, Some(false))) => return None,
        Some((cmd, None)) => cmd.to_owned(),
        _ => std::env::var("GIT_PAGER")
            .ok()
            .or_else(|| global_config("core.pager"))
            .or_else(|| std::env::var("PAGER").ok())
            .unwrap_or_else(|| "less".to_owned()),
    };
    let cmd = cmd.trim().to_owned();
    (!cmd.is_empty() && cmd != "cat").then_some(cmd)
}

/// Colour per the global `color.diff`, else `color.ui` (`auto`: when the
/// output, or the pager's, is a terminal); never with `NO_COLOR`.
fn color(paged: bool) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let auto = paged || std::io::stdout().is_terminal();
    let v = global_config("color.diff").or_else(|| global_config("color.ui"));
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("always") => true,
        Some("never") => false,
        Some(other) => git_bool(other).unwrap_or(auto) && auto,
        None => auto,
    }
}

/// Runs the user's pager (through `sh`, as git does) with `text` on its
/// stdin, and waits for it; `LESS=FRX` unless the user set `LESS`.
fn through_pager(cmd: &str, text: &[u8]) {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(cmd).stdin(std::process::Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        c.env("LESS", "FRX");
    }
    if std::env::var_os("LV").is_none() {
        c.env("LV", "-c");
    }
    match c.spawn() {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                // The user may quit the pager before the end: not an error.
                let _ = stdin.write_all(text);
            }
            let _ = child.wait();
        }
        Err(_) => {
            let _ = std::io::stdout().write_all(text);
        }
    }
}
