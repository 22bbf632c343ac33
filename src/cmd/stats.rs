//! `stats [ID] [--watch] [--json]`: like `docker stats`, for instances.

use super::Ctx;
use crate::error::{Error, Result};
use crate::monitor::stats::{human_bytes, sample_all, Sample};
use crate::output::print_json;
use crate::types::InstanceId;
use std::io::Write;

/// Samples running instances (or one) and records them (and any alert).
pub fn sample(ctx: &Ctx, id: Option<&InstanceId>) -> Result<Vec<Sample>> {
    let reg = crate::runtime::refresh(ctx)?;
    if let Some(id) = id {
        let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
        if inst.status != crate::types::Status::Running {
            return Err(Error::Invalid(format!("{id} is {}", inst.status)));
        }
    }
    let live: Vec<_> = reg
        .instances
        .values()
        .filter(|i| i.status == crate::types::Status::Running)
        .filter(|i| id.is_none_or(|id| &i.id == id))
        .collect();
    let samples = sample_all(&live);
    crate::monitor::alerts::record(ctx, &samples)?;
    Ok(samples)
}

pub fn table(samples: &[Sample]) -> String {
    let w = samples.iter().map(|s| s.id.len()).max().unwrap_or(2).max(2);
    let mut out = format!(
        "{:<w$}  {:>7}  {:>21}  {:>7}  {:>19}  {:>19}  {:>4}\n",
        "ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    );
    for s in samples {
        out.push_str(&format!(
            "{:<w$}  {:>6.2}%  {:>21}  {:>6.2}%  {:>19}  {:>19}  {:>4}\n",
            s.id,
            s.cpu_percent,
            format!(
                "{} / {}",
                human_bytes(s.memory_usage),
                human_bytes(s.memory_limit)
            ),
            s.memory_percent,
            format!("{} / {}", human_bytes(s.net_rx), human_bytes(s.net_tx)),
            format!(
                "{} / {}",
                human_bytes(s.block_read),
                human_bytes(s.block_write)
            ),
            s.pids
        ));
    }
    out
}

pub fn stats(ctx: &Ctx, id: Option<InstanceId>, watch: bool, json: bool) -> Result<u8> {
    if json {
        print_json(&sample(ctx, id.as_ref())?)?;
        return Ok(0);
    }
    if !watch {
        let samples = sample(ctx, id.as_ref())?;
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
        let samples = sample(ctx, id.as_ref())?;
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
