//! `login MODE [--from-host]` and `state migrate`.

use super::Ctx;
use crate::agent_state;
use crate::config::{self, StateScope};
use crate::error::Result;
use crate::events::Level;
use crate::types::Mode;
use serde_json::json;

pub fn login(ctx: &Ctx, mode: Mode, from_host: bool) -> Result<u8> {
    let eff = config::load_for(&ctx.dirs, &mode, None)?;
    if eff.agent.state == StateScope::Instance {
        eprintln!(
            "ai-sessctl: note: agents.{mode}.state = \"instance\": instances keep their own state and will not see this login"
        );
    }
    if from_host {
        let copy = agent_state::copy_from_host(&ctx.dirs, &mode)?;
        ctx.events().log(
            Level::Info,
            "state",
            "login copied from host",
            json!({"mode": mode, "to": copy.to}),
        );
        println!(
            "copied {mode}'s login from {} to {} (0600); every {mode} instance uses it",
            copy.from,
            copy.to.display()
        );
        return Ok(0);
    }
    let code = agent_state::login_in_container(&ctx.dirs, &mode, &eff)?;
    ctx.events().log(
        Level::Info,
        "state",
        "login container finished",
        json!({"mode": mode, "exit_code": code}),
    );
    if code == 0 {
        println!(
            "{mode}'s state is in {}; every {mode} instance uses it",
            ctx.dirs.agent_state(&mode).display()
        );
    }
    Ok(u8::try_from(code).unwrap_or(1))
}

pub fn migrate(ctx: &Ctx) -> Result<u8> {
    let done = agent_state::migrate(ctx)?;
    if done.is_empty() {
        println!("nothing to migrate: no per-instance state dirs");
        return Ok(0);
    }
    let mut skipped = 0;
    for m in &done {
        if let Some(why) = &m.skipped {
            skipped += 1;
            println!("states/{}: left as it is: {why}", m.id);
            continue;
        }
        println!(
            "states/{} -> {}: {} file(s) moved, {} identical dropped, {} conflict(s)",
            m.id,
            m.into.display(),
            m.moved,
            m.same,
            m.aside.len()
        );
        for (rel, aside) in &m.aside {
            println!(
                "  {}: kept the newer copy; the older is at {}",
                rel.display(),
                aside.display()
            );
        }
        ctx.events().log(
            Level::Info,
            "state",
            "state migrated",
            json!({"instance": m.id, "into": m.into, "moved": m.moved, "conflicts": m.aside.len()}),
        );
    }
    Ok(if skipped > 0 { 1 } else { 0 })
}
