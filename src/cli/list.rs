//! `list`, `show`, `find`: what the registry (reconciled with reality) holds.

use super::Ctx;
use crate::cli::output::{human_age, human_duration, paint, print_json, status_color};
use crate::cli::StatusFilter;
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode};
use crate::state::registry::Instance;
use crate::state::spend::Spend;
use std::collections::BTreeMap;

/// The registry reconciled with the runtime, with the agents' latest
/// activity read from their status files.
fn current(ctx: &Ctx) -> Result<crate::state::registry::Registry> {
    let reg = crate::lifecycle::refresh(ctx)?;
    if reg.live_count() == 0 {
        return Ok(reg);
    }
    crate::features::activity::watch::ensure(ctx);
    // Re-read even without changes of ours: the watcher may have recorded
    // the same change a moment before.
    let mut warnings = crate::core::warning::Warnings::new();
    crate::features::activity::sync_quietly(ctx, &mut warnings);
    crate::cli::output::warnings(warnings);
    ctx.store.load()
}

/// The activity as `list` and `top` show it: `-` when the instance is not
/// live (a stopped agent's last word is history).
pub(super) fn activity_word(i: &Instance) -> String {
    if i.status.is_live() {
        i.activity.as_str().to_owned()
    } else {
        "-".to_owned()
    }
}

/// [`activity_word`], painted when the instance needs you.
fn activity_shown(i: &Instance, on: bool) -> String {
    let word = activity_word(i);
    if i.needs_you() {
        paint(&word, "33;1", on)
    } else {
        word
    }
}

pub fn list(ctx: &Ctx, status: StatusFilter, json: bool, quiet: bool) -> Result<u8> {
    let reg = current(ctx)?;
    let rows: Vec<&Instance> = reg
        .instances
        .values()
        .filter(|i| status.matches(i.status))
        .collect();
    if quiet {
        for i in rows {
            println!("{}", i.id);
        }
        return Ok(0);
    }
    // The ledgers, read once: the SPEND column, and the moment to raise a
    // budget alert no watcher has (it goes to the event log and
    // `alerts.command`).
    let ledgers = crate::service::spend::ledgers(ctx);
    let spend = crate::service::spend::by_instance_of(ctx, &reg, &ledgers);
    if let Err(e) = crate::service::spend::budget::check_with(ctx, &ledgers) {
        eprintln!("ai-sessctl: warning: budget alerts not checked: {e}");
    }
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|i| crate::service::spend::instance_json(i, spend.get(&i.id)))
            .collect();
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!(
            "No instances{}.",
            match status {
                StatusFilter::Running => " running",
                StatusFilter::Stopped => " stopped",
                StatusFilter::All => "",
            }
        );
    } else {
        print_table(&rows, &spend);
    }
    Ok(0)
}

/// Limits as configured: `500m / 2G`.
fn limits(i: &Instance) -> String {
    match (&i.resources.cpu_limit, &i.resources.memory_limit) {
        (None, None) => "-".to_owned(),
        (c, m) => format!(
            "{} / {}",
            c.as_deref().map(cpu_shown).unwrap_or_else(|| "-".into()),
            m.as_deref().map(memory_shown).unwrap_or_else(|| "-".into())
        ),
    }
}

/// A limit recorded by an older version may be in the canonical form
/// (`1953125Ki`); show it the way a user writes it.
fn memory_shown(m: &str) -> String {
    m.parse::<crate::state::config::units::Bytes>()
        .map(|b| b.to_string())
        .unwrap_or_else(|_| m.to_owned())
}

fn cpu_shown(c: &str) -> String {
    c.parse::<crate::state::config::units::Cpu>()
        .map(|c| c.to_string())
        .unwrap_or_else(|_| c.to_owned())
}

/// Usage is shown as is while fresh, with its age once older than this.
const FRESH: chrono::Duration = chrono::Duration::seconds(60);

/// The last sampled CPU and memory of a live instance, with the sample's
/// age when it is not fresh; `-` before any sample.
fn usage(i: &Instance) -> (String, String) {
    let r = &i.resources;
    let (Some(c), Some(m), true) = (&r.cpu_usage, &r.memory_usage, i.status.is_live()) else {
        return ("-".into(), "-".into());
    };
    let age = r.usage_at.map(|t| chrono::Utc::now() - t);
    match age {
        Some(a) if a <= FRESH => (c.clone(), m.clone()),
        Some(a) => {
            let ago = human_age(a);
            (format!("{c} ({ago} ago)"), format!("{m} ({ago} ago)"))
        }
        None => (format!("{c} (old)"), format!("{m} (old)")),
    }
}

/// The project path as the user knows it: `~/src/api`.
pub fn project_shown(path: &str) -> String {
    crate::core::paths::home_shown(path)
}

fn uptime(i: &Instance) -> String {
    match i.timestamps.started.or(i.timestamps.created) {
        Some(t) if i.status.is_live() => human_duration(chrono::Utc::now() - t),
        _ => "-".to_owned(),
    }
}

/// The git branch of a worktree or clone instance (a repository's string:
/// shown through [`crate::core::untrusted::printable`]).
pub fn branch_of(i: &Instance) -> Option<&str> {
    i.worktree
        .as_ref()
        .map(|w| w.branch.as_str())
        .or_else(|| i.clone.as_ref().map(|c| c.branch.as_str()))
        .filter(|b| !b.is_empty())
}

/// `$0.42` (`+?` when some model has no price), `-` before any brokered
/// call.
fn spend_shown(s: Option<&Spend>) -> String {
    s.filter(|s| s.requests > 0)
        .map_or_else(|| "-".to_owned(), Spend::cost_text)
}

fn print_table(rows: &[&Instance], spend: &BTreeMap<InstanceId, Spend>) {
    let on = crate::cli::output::color_stdout();
    // The branch column only when it says something: a narrow terminal
    // keeps its width while no worktree instance is listed.
    let branches = rows.iter().any(|i| branch_of(i).is_some());
    let mut header = vec!["ID", "PROJECT"];
    if branches {
        header.push("BRANCH");
    }
    header.extend([
        "MODE", "PORT", "STATUS", "ACTIVITY", "LIMITS", "CPU", "MEM", "UPTIME", "SPEND",
    ]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|i| {
            let (cpu, mem) = usage(i);
            let mut row = vec![i.id.to_string(), project_shown(&i.project_path)];
            if branches {
                row.push(crate::core::untrusted::printable(
                    branch_of(i).unwrap_or("-"),
                ));
            }
            row.extend([
                i.mode.to_string(),
                port_cell(i),
                paint(i.status.as_str(), status_color(i.status), on),
                activity_shown(i, on),
                limits(i),
                cpu,
                mem,
                uptime(i),
                spend_shown(spend.get(&i.id)),
            ]);
            row
        })
        .collect();
    let port = if branches { 4 } else { 3 };
    let spend_col = header.len() - 1;
    print!(
        "{}",
        crate::cli::output::table(&header, cells, &[port, spend_col])
    );
}

pub fn show(ctx: &Ctx, id: InstanceId, json: bool) -> Result<u8> {
    let reg = current(ctx)?;
    let inst = reg.get(&id).ok_or_else(|| Error::not_found(&id))?;
    let spend = crate::service::spend::by_instance(ctx, &reg);
    if json {
        print_json(&crate::service::spend::instance_json(inst, spend.get(&id)))?;
        return Ok(0);
    }
    let on = crate::cli::output::color_stdout();
    // Fields hold what a box or a repository wrote (a reason, a branch).
    let field =
        |k: &str, v: &str| println!("{:<14}{}", format!("{k}:"), crate::cli::output::shown(v));
    field("id", inst.id.as_str());
    field(
        "status",
        &paint(inst.status.as_str(), status_color(inst.status), on),
    );
    if let Some(r) = &inst.status_reason {
        field("reason", r);
    }
    field("activity", &activity_shown(inst, on));
    if let Some(b) = branch_of(inst) {
        field("branch", &crate::core::untrusted::printable(b));
    }
    field("project", &inst.project_path);
    field("mode", inst.mode.as_str());
    field("port", &port_field(inst));
    if let Some(rt) = inst.runtime {
        field("runtime", &format!("{rt:?}").to_lowercase());
    }
    if let Some(img) = &inst.image {
        field("image", img);
    }
    if let Some(c) = &inst.container_id {
        field("container", &c[..c.len().min(12)]);
    }
    if let Some(e) = inst.egress {
        field("egress", &e.to_string());
    }
    if let Some(p) = inst.pid {
        field("pid", &p.to_string());
    }
    field("limits", &limits(inst));
    let (cpu, mem) = usage(inst);
    field("cpu", &cpu);
    field("memory", &mem);
    field("uptime", &uptime(inst));
    field("spend", &spend_shown(spend.get(&id)));
    if let Some(t) = inst.timestamps.created {
        field("created", &t.to_rfc3339());
    }
    if let Some(c) = inst.exit_code {
        field("exit code", &c.to_string());
    }
    if let Some(h) = &inst.health {
        field("health", h.status.as_str());
    }
    if let Some(p) = inst.owner_pid {
        field("owner shell", &p.to_string());
    }
    Ok(0)
}

pub fn find(ctx: &Ctx, project: &str, mode: Option<Mode>, json: bool) -> Result<u8> {
    let reg = current(ctx)?;
    // A path names one project; anything else is matched as a project name.
    let path = std::path::Path::new(project);
    let as_path = if (project.contains('/') || project == ".") && path.is_dir() {
        let guard = crate::state::project::Guard::new(ctx.dirs.root());
        let root = guard.resolve(path, crate::state::project::Lookup::Climb)?;
        Some(root.to_string_lossy().into_owned())
    } else {
        None
    };
    let hits: Vec<&Instance> = reg
        .instances
        .values()
        .filter(|i| match &as_path {
            Some(p) => &i.project_path == p,
            None => i.project_name == project,
        })
        .filter(|i| mode.as_ref().is_none_or(|m| &i.mode == m))
        .collect();
    if json {
        print_json(&hits)?;
    } else {
        for i in &hits {
            println!("{}\t{}\t{}\t{}", i.id, i.status, i.port, i.project_path);
        }
    }
    if hits.is_empty() {
        return Err(Error::NotFound(format!(
            "no instance for project {:?}",
            crate::core::types::truncate_for_message(project)
        )));
    }
    Ok(0)
}

/// The PORT cell: the port where it is published, else `-`.
pub fn port_cell(inst: &Instance) -> String {
    match inst.publishes_port() {
        true => inst.port.to_string(),
        false => "-".into(),
    }
}

/// `show`'s port: the address, or why there is none.
fn port_field(inst: &Instance) -> String {
    if inst.publishes_port() {
        inst.address()
    } else if !inst.status.is_live() {
        format!(
            "- (not published while {}; it was {})",
            inst.status, inst.port
        )
    } else {
        "- (egress none: nothing is published)".into()
    }
}

/// Where a started instance is, for its message: "on 127.0.0.1:9001", or
/// that no port is published.
pub fn started_at(inst: &Instance) -> String {
    match inst.egress {
        Some(crate::state::config::EgressPolicy::None) => {
            "(egress none: no port is published)".into()
        }
        _ => format!("on {}", inst.address()),
    }
}
