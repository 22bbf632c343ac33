//! What tab completion offers (instance ids, config keys, worktrees,
//! agents). Never fails: a completion must not print errors.

use crate::state::context::Ctx;

/// Instance ids with a short description, for tab completion. Never fails:
/// a completion must not print errors.
pub fn ids() -> Vec<(String, String)> {
    let Ok(ctx) = Ctx::from_env() else {
        return Vec::new();
    };
    let Ok(reg) = ctx.store.load() else {
        return Vec::new();
    };
    reg.instances
        .values()
        .map(|i| {
            (
                i.id.to_string(),
                format!("{} {} {}", i.status, i.mode, i.project_path),
            )
        })
        .collect()
}

pub fn config_keys() -> Vec<String> {
    Ctx::from_env()
        .map(|c| crate::state::config::known_keys(&c.dirs))
        .unwrap_or_default()
}

/// `-w <TAB>`: the worktrees made for the repository the shell is in.
pub fn worktrees() -> Vec<(String, Option<String>)> {
    let Ok(ctx) = Ctx::from_env() else {
        return Vec::new();
    };
    std::env::current_dir()
        .ok()
        .and_then(|d| crate::features::worktree::inventory::repo_of(&d))
        .map(|repo| crate::features::worktree::inventory::names(&ctx, &repo))
        .unwrap_or_default()
}

pub fn agents() -> Vec<String> {
    Ctx::from_env()
        .ok()
        .and_then(|c| crate::state::config::agent_names(&c.dirs).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.to_string())
        .collect()
}
