//! `stats [ID] [--watch] [--json]`: like `docker stats`, for instances.

use super::Ctx;
use crate::cli::output::print_json;
use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::features::monitor::stats::{human_bytes, Sample};
use std::io::Write;

pub fn table(samples: &[Sample]) -> String {
    let header = [
        "ID",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ];
    let rows = samples
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                format!("{:.2}%", s.cpu_percent),
                format!(
                    "{} / {}",
                    human_bytes(s.memory_usage),
                    human_bytes(s.memory_limit)
                ),
                format!("{:.2}%", s.memory_percent),
                format!("{} / {}", human_bytes(s.net_rx), human_bytes(s.net_tx)),
                format!(
                    "{} / {}",
                    human_bytes(s.block_read),
                    human_bytes(s.block_write)
                ),
                s.pids.to_string(),
            ]
        })
        .collect();
    crate::cli::output::table(&header, rows, &[1, 2, 3, 4, 5, 6])
}

pub fn stats(ctx: &Ctx, id: Option<InstanceId>, watch: bool, json: bool) -> Result<u8> {
    if json {
        print_json(&crate::service::stats::sample(ctx, id.as_ref())?)?;
        return Ok(0);
    }
    if !watch {
        let samples = crate::service::stats::sample(ctx, id.as_ref())?;
        if samples.is_empty() {
            println!("No running instances.");
        } else {
            print!("{}", table(&samples));
        }
        return Ok(0);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, std::sync::Arc::clone(&stop));
    let mut out = std::io::stdout();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let samples = crate::service::stats::sample(ctx, id.as_ref())?;
        // Home and clear, as docker stats does, so the table redraws in place.
        let body = if samples.is_empty() {
            "No running instances.\n".to_owned()
        } else {
            table(&samples)
        };
        if write!(out, "\x1b[H\x1b[2J{body}")
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
        for _ in 0..10 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cell's (first, last) character column; cells are separated
    /// by two or more spaces.
    fn cells(line: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = line.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == ' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len()
                && !(chars[i] == ' ' && chars.get(i + 1).is_none_or(|c| *c == ' '))
            {
                i += 1;
            }
            out.push((start, i - 1));
        }
        out
    }

    /// Every column lines up (left or right edge) in the header and all
    /// rows, whatever the width of the figures.
    #[test]
    fn columns_line_up_with_wide_and_narrow_figures() {
        let sample = |id: &str, big: bool| Sample {
            id: id.into(),
            cpu_percent: if big { 1234.5 } else { 0.5 },
            memory_usage: if big { 1023 << 30 } else { 512 },
            memory_limit: if big { 2 << 40 } else { 1 << 30 },
            memory_percent: if big { 99.99 } else { 0.0 },
            net_rx: if big { 1023 << 20 } else { 0 },
            net_tx: if big { 1000 << 30 } else { 0 },
            block_read: if big { 1023 << 30 } else { 0 },
            block_write: if big { 5 << 40 } else { 0 },
            pids: if big { 12345 } else { 1 },
        };
        let text = table(&[
            sample("a-claude", false),
            sample("a-much-longer-project-name-gemini", true),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let all: Vec<Vec<(usize, usize)>> = lines.iter().map(|l| cells(l)).collect();
        for row in &all {
            assert_eq!(row.len(), 7, "{text}");
        }
        for col in 0..7 {
            let starts = all.iter().all(|r| r[col].0 == all[0][col].0);
            let ends = all.iter().all(|r| r[col].1 == all[0][col].1);
            assert!(starts || ends, "column {col} is ragged:\n{text}");
        }
    }
}
