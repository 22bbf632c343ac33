//! `login MODE [--from-host]` and `state migrate`.

use super::Ctx;
use crate::core::error::Result;
use crate::core::types::Mode;
use crate::core::untrusted::printable;
use crate::features::agent_state;
use crate::state::config::{self, StateScope};
use crate::state::events::Level;
use serde_json::json;

pub fn login(ctx: &Ctx, mode: Mode, from_host: bool) -> Result<u8> {
    let eff = config::load_for(&ctx.dirs, &mode, None)?;
    if eff.agent.state == StateScope::Instance {
        eprintln!(
            "ai-sessctl: note: agents.{mode}.state = \"instance\": instances do not mount the shared login and will not see this one"
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
            "copied {mode}'s login from {} to {} (0600); {mode} instances started from now on mount it read-only",
            copy.from,
            copy.to.display()
        );
        if let Some(a) = &copy.answers {
            println!(
                "and its answers to first-run questions ({}), given to each instance that has none of its own",
                a.summary()
            );
        }
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
            "{mode}'s login is in {}; {mode} instances started from now on mount it read-only",
            ctx.dirs.agent_state(&mode).display()
        );
    }
    Ok(u8::try_from(code).unwrap_or(1))
}

pub fn migrate(ctx: &Ctx) -> Result<u8> {
    let done = agent_state::migrate(ctx)?;
    if done.is_empty() {
        println!("nothing to migrate: no agent state is shared but the login");
        return Ok(0);
    }
    let mut skipped = 0;
    for m in &done {
        if let Some(why) = &m.skipped {
            skipped += 1;
            println!("states/{}: left as it is: {why}", m.mode);
            continue;
        }
        println!(
            "states/{}: copied into {} instance dir(s) ({} file(s) copied, {} kept as the instance had them); only the login stays shared",
            m.mode,
            m.into.len(),
            m.copied,
            m.kept_own,
        );
        if let Some(a) = &m.archive {
            println!("  the old shared state is kept whole in {}", a.display());
        }
        for (inst, rel, why) in m.refused.iter().take(20) {
            println!(
                "  {inst}: {}: {}",
                printable(&rel.to_string_lossy()),
                printable(why)
            );
        }
        if m.refused.len() > 20 {
            println!("  … and {} more left out", m.refused.len() - 20);
        }
        ctx.events().log(
            Level::Info,
            "state",
            "state migrated",
            json!({"mode": m.mode, "into": m.into, "copied": m.copied, "kept": m.kept_own,
                   "left_out": m.refused.len(), "archive": m.archive}),
        );
    }
    Ok(if skipped > 0 { 1 } else { 0 })
}
