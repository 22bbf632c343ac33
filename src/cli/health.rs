//! `health check|watch`, `heal`.

use super::Ctx;
use crate::cli::output::{paint, print_json};
use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::service::health::Verdict;
use crate::service::health::WatchNotice;

pub fn check(ctx: &Ctx, id: Option<InstanceId>, json: bool) -> Result<u8> {
    let reports = crate::service::health::check(ctx, id.as_ref())?;
    if json {
        print_json(&reports)?;
    } else if reports.is_empty() {
        println!("No instances.");
    } else {
        let on = crate::cli::output::color_stdout();
        let rows = reports
            .iter()
            .map(|r| {
                let color = match r.status {
                    Verdict::Healthy => "32",
                    Verdict::Unhealthy => "31",
                    Verdict::Starting => "33",
                    Verdict::Unknown | Verdict::NotLive(_) => "2",
                };
                let checks: Vec<String> = r
                    .checks
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}{}",
                            if c.ok { "✓" } else { "✗" },
                            c.name,
                            if c.ok {
                                String::new()
                            } else {
                                format!(" ({})", c.detail)
                            }
                        )
                    })
                    .collect();
                vec![
                    r.id.clone(),
                    paint(r.status.as_str(), color, on),
                    checks.join("  "),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::cli::output::table(&["ID", "HEALTH", "CHECKS"], rows, &[])
        );
    }
    if let Some(e) = reports.iter().find_map(|r| r.outage()) {
        return Err(crate::core::error::Error::Engine(format!(
            "{e}; health not checked (nothing recorded)"
        )));
    }
    Ok(u8::from(reports.iter().any(|r| r.unhealthy())))
}

pub fn watch(ctx: &Ctx) -> Result<u8> {
    if ctx.global()?.health.restart_after_reboot {
        for (id, r) in crate::service::resume::resume_all(ctx)? {
            match r {
                Ok(_) => eprintln!("resumed {id}"),
                Err(e) => eprintln!("ai-sessctl: resume {id}: {e}"),
            }
        }
    }
    crate::service::health::watch(ctx, say)?;
    Ok(0)
}

/// Prints what `health watch` has to say (alerts, events, unhealthy
/// instances and healing on stdout; the rest on stderr).
fn say(notice: WatchNotice) {
    match notice {
        WatchNotice::Started { interval } => {
            eprintln!("watching instances (checks every {interval:?}); ctrl-c to stop")
        }
        WatchNotice::Stopped => eprintln!("stopped watching"),
        WatchNotice::Warning(w) => eprintln!("{w}"),
        WatchNotice::Alert(a) => println!("alert: {a}"),
        WatchNotice::Engine(s) => println!("event: {s}"),
        WatchNotice::Unhealthy { id, failed } => {
            println!("{id}: unhealthy ({})", failed.join(", "))
        }
        WatchNotice::Healed(line) => println!("{line}"),
        WatchNotice::Retrying { error, pause } => eprintln!(
            "ai-sessctl: warning: health watch: {error}; trying again in {}s",
            pause.as_secs()
        ),
    }
}

pub fn heal(ctx: &Ctx, id: InstanceId) -> Result<u8> {
    crate::service::health::heal(ctx, &id)?;
    eprintln!("restarted {id}");
    Ok(0)
}
