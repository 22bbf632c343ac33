//! `list`, `show`, `find`: what the registry (reconciled with reality) holds.

use super::Ctx;
use crate::cli::StatusFilter;
use crate::error::{Error, Result};
use crate::output::{human_duration, paint, print_json, status_color};
use crate::registry::Instance;
use crate::types::{InstanceId, Mode};

pub fn list(ctx: &Ctx, status: StatusFilter, json: bool, quiet: bool) -> Result<u8> {
    let reg = crate::runtime::refresh(ctx)?;
    let rows: Vec<&Instance> = reg
        .instances
        .values()
        .filter(|i| status.matches(i.status))
        .collect();
    if json {
        print_json(&rows)?;
    } else if quiet {
        for i in rows {
            println!("{}", i.id);
        }
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
        print_table(&rows);
    }
    Ok(0)
}

fn resources(i: &Instance) -> String {
    match (&i.resources.cpu_usage, &i.resources.memory_usage) {
        (Some(c), Some(m)) => format!("{c}/{m}"),
        _ => format!(
            "{}/{}",
            i.resources.cpu_limit.as_deref().unwrap_or("-"),
            i.resources.memory_limit.as_deref().unwrap_or("-")
        ),
    }
}

fn uptime(i: &Instance) -> String {
    match i.timestamps.started.or(i.timestamps.created) {
        Some(t) if i.status.is_live() => human_duration(chrono::Utc::now() - t),
        _ => "-".to_owned(),
    }
}

fn print_table(rows: &[&Instance]) {
    let on = crate::output::color_stdout();
    let header = [
        "ID",
        "PROJECT",
        "MODE",
        "PORT",
        "STATUS",
        "RESOURCES",
        "UPTIME",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|i| {
            [
                i.id.to_string(),
                i.project_name.clone(),
                i.mode.to_string(),
                i.port.to_string(),
                i.status.to_string(),
                resources(i),
                uptime(i),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String; 7], status: Option<crate::types::Status>| {
        let mut out = String::new();
        for (n, (c, w)) in row.iter().zip(width).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            let text = match (n, status) {
                (4, Some(s)) => paint(c, status_color(s), on),
                _ => c.clone(),
            };
            if n == 6 {
                out.push_str(&text);
            } else {
                out.push_str(&format!("{text}{pad}  "));
            }
        }
        out
    };
    println!("{}", line(&header.map(String::from), None));
    for (row, inst) in cells.iter().zip(rows) {
        println!("{}", line(row, Some(inst.status)));
    }
}

pub fn show(ctx: &Ctx, id: InstanceId, json: bool) -> Result<u8> {
    let reg = crate::runtime::refresh(ctx)?;
    let inst = reg.get(&id).ok_or_else(|| Error::not_found(&id))?;
    if json {
        print_json(inst)?;
        return Ok(0);
    }
    let on = crate::output::color_stdout();
    let field = |k: &str, v: &str| println!("{:<14}{v}", format!("{k}:"));
    field("id", inst.id.as_str());
    field(
        "status",
        &paint(inst.status.as_str(), status_color(inst.status), on),
    );
    if let Some(r) = &inst.status_reason {
        field("reason", r);
    }
    field("project", &inst.project_path);
    field("mode", inst.mode.as_str());
    field("port", &inst.address());
    if let Some(rt) = inst.runtime {
        field("runtime", &format!("{rt:?}").to_lowercase());
    }
    if let Some(img) = &inst.image {
        field("image", img);
    }
    if let Some(c) = &inst.container_id {
        field("container", &c[..c.len().min(12)]);
    }
    if let Some(p) = inst.pid {
        field("pid", &p.to_string());
    }
    field("resources", &resources(inst));
    field("uptime", &uptime(inst));
    if let Some(t) = inst.timestamps.created {
        field("created", &t.to_rfc3339());
    }
    if let Some(c) = inst.exit_code {
        field("exit code", &c.to_string());
    }
    if let Some(h) = &inst.health {
        field("health", &h.status);
    }
    if let Some(p) = inst.owner_pid {
        field("owner shell", &p.to_string());
    }
    Ok(0)
}

pub fn find(ctx: &Ctx, project: &str, mode: Option<Mode>, json: bool) -> Result<u8> {
    let reg = crate::runtime::refresh(ctx)?;
    // A path names one project; anything else is matched as a project name.
    let path = std::path::Path::new(project);
    let as_path = if (project.contains('/') || project == ".") && path.is_dir() {
        let guard = crate::project::Guard::new(ctx.dirs.root());
        let root = guard.resolve(path, crate::project::Lookup::Climb)?;
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
            crate::types::truncate_for_message(project)
        )));
    }
    Ok(0)
}
