//! `worktree list`: the worktrees `--worktree NAME` made.

use super::Ctx;
use crate::cli::output::print_json;
use crate::cli::WorktreeCmd;
use crate::core::error::Result;
use crate::core::untrusted::printable;
use crate::features::worktree::inventory;

pub fn worktree(ctx: &Ctx, cmd: WorktreeCmd) -> Result<u8> {
    match cmd {
        WorktreeCmd::List { quiet: true, .. } => {
            let here = std::env::current_dir()
                .ok()
                .and_then(|d| inventory::repo_of(&d));
            for (name, _) in here.map_or_else(Vec::new, |r| inventory::names(ctx, &r)) {
                println!("{}", printable(&name));
            }
            Ok(0)
        }
        WorktreeCmd::List { all, json, .. } => list(ctx, all, json),
    }
}

fn list(ctx: &Ctx, all: bool, json: bool) -> Result<u8> {
    let reg = crate::lifecycle::refresh_quietly(ctx)?;
    let here = if all {
        None
    } else {
        std::env::current_dir()
            .ok()
            .and_then(|d| inventory::repo_of(&d))
    };
    let entries = inventory::list(ctx, &reg, here.as_deref())?;
    if json {
        print_json(&entries)?;
        return Ok(0);
    }
    if entries.is_empty() {
        match &here {
            Some(r) => println!(
                "No worktrees made by ai-sessions for {} (`--all`: every repository).",
                printable(&super::list::project_shown(&r.to_string_lossy()))
            ),
            None => println!("No worktrees made by ai-sessions."),
        }
        return Ok(0);
    }
    let header = ["PATH", "BRANCH", "INSTANCES", "CHANGES"];
    let rows = entries
        .iter()
        .map(|e| {
            let instances = e
                .instances
                .iter()
                .map(|i| format!("{} ({})", i.id, i.status))
                .collect::<Vec<_>>();
            vec![
                // Paths and branches git lists come from the repository's
                // files (`.git/worktrees/*/gitdir`, HEAD): the agent's.
                printable(&super::list::project_shown(&e.path.to_string_lossy())),
                e.branch
                    .as_deref()
                    .map_or_else(|| "(detached)".to_owned(), printable),
                if instances.is_empty() {
                    "-".to_owned()
                } else {
                    instances.join(", ")
                },
                e.changes.describe(),
            ]
        })
        .collect();
    print!("{}", crate::cli::output::table(&header, rows, &[]));
    Ok(0)
}
