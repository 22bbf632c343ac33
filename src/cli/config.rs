//! `config get|set|--edit`.

use super::Ctx;
use crate::cli::{ConfigArgs, ConfigCmd, ScopeArgs};
use crate::core::error::{Error, Result};
use crate::state::config::{self, Scope};

fn scope_of(ctx: &Ctx, s: ScopeArgs) -> Result<Scope> {
    match s.id {
        Some(id) if !s.global => {
            // An instance's file may be written before it first starts, but
            // its id must name a configured agent.
            config::load_for(
                &ctx.dirs,
                &crate::core::types::Mode::parse(id.mode_suffix())?,
                None,
            )?;
            Ok(Scope::Instance(id))
        }
        _ => Ok(Scope::Global),
    }
}

fn effective(ctx: &Ctx, scope: &Scope) -> Result<config::Settings> {
    match scope {
        Scope::Global => config::load_global(&ctx.dirs),
        Scope::Instance(id) => Ok(config::load_for(
            &ctx.dirs,
            &crate::core::types::Mode::parse(id.mode_suffix())?,
            Some(id),
        )?
        .settings),
    }
}

/// `[ID] KEY [VALUE]` words of `get`/`set`: the id comes first unless
/// `--global` is given.
fn split_words<const N: usize>(
    global: bool,
    mut words: Vec<String>,
) -> Result<(ScopeArgs, [String; N])> {
    let id = if global {
        None
    } else if words.len() == N + 1 {
        Some(crate::core::types::InstanceId::parse(&words.remove(0))?)
    } else {
        return Err(Error::Usage(
            "name an instance id or --global before the key".into(),
        ));
    };
    let rest: [String; N] = words.try_into().map_err(|w: Vec<String>| {
        Error::Usage(format!(
            "expected {} after {}, got {} word(s)",
            if N == 1 { "KEY" } else { "KEY VALUE" },
            if global { "--global" } else { "the id" },
            w.len()
        ))
    })?;
    Ok((ScopeArgs { id, global }, rest))
}

pub fn config(ctx: &Ctx, args: ConfigArgs) -> Result<u8> {
    match args.action {
        Some(ConfigCmd::Get { global, words }) => {
            let (scope, [key]) = split_words(global, words)?;
            let scope = scope_of(ctx, scope)?;
            println!("{}", config::get_value(&effective(ctx, &scope)?, &key)?);
        }
        Some(ConfigCmd::Set { global, words }) => {
            let (scope, [key, value]) = split_words(global, words)?;
            let scope = scope_of(ctx, scope)?;
            let before = config::agent_names(&ctx.dirs).unwrap_or_default();
            config::set_value(&ctx.dirs, &scope, &key, &value)?;
            if applies_to_brokers(&key) {
                // The brokers re-read their settings file: no restart.
                crate::cli::output::warnings(crate::service::spend::refresh_brokers(ctx));
            } else {
                note_when_it_applies(ctx, &scope, Some(&key));
            }
            agents_changed(ctx, &before);
            ctx.events().log(
                crate::state::events::Level::Info,
                "config",
                "config changed",
                serde_json::json!({"file": scope.file(&ctx.dirs), "key": key}),
            );
        }
        None => {
            let scope = scope_of(ctx, args.scope)?;
            if args.edit {
                let before = config::agent_names(&ctx.dirs).unwrap_or_default();
                if config::edit_interactively(&ctx.dirs, &scope, &mut edit_again)? {
                    eprintln!("saved {}", scope.file(&ctx.dirs).display());
                    // Whatever changed, budgets and prices apply now.
                    crate::cli::output::warnings(crate::service::spend::refresh_brokers(ctx));
                    note_when_it_applies(ctx, &scope, None);
                    agents_changed(ctx, &before);
                }
            } else {
                let s = effective(ctx, &scope)?;
                let text =
                    toml::to_string_pretty(&s).map_err(|e| Error::Other(format!("config: {e}")))?;
                print!("{text}");
            }
        }
    }
    Ok(0)
}

/// `[budget]` and `[prices]` keys: a running broker applies them.
fn applies_to_brokers(key: &str) -> bool {
    ["budget", "prices"]
        .iter()
        .any(|t| key == *t || key.strip_prefix(t).is_some_and(|r| r.starts_with('.')))
}

/// Whether a running instance of `mode` keeps its old value of `key`
/// until it starts again. Its container (resources, network, image, log
/// options) and its agent's command and model settings are fixed at start;
/// the rest is read when used (alerts and health by the monitor, `global.*`
/// by the next command, `worktree.*` by the next worktree), so a change
/// applies at once. `None` is a whole-file edit: anything may have changed.
fn fixed_at_start(key: Option<&str>, mode: &crate::core::types::Mode) -> bool {
    let Some(key) = key else { return true };
    let mut parts = key.split('.');
    match parts.next().unwrap_or_default() {
        "resources" | "networking" | "images" | "logging" | "instance" => true,
        // Only the instances of that agent; a new agent's section touches none.
        "agents" | "ai_config" => parts.next().is_none_or(|m| m == mode.as_str()),
        _ => false,
    }
}

/// A running instance keeps the settings it was started with: say so,
/// naming the command that applies the change now, for the instances the
/// change is fixed in (`key` is `None` for a whole-file edit).
fn note_when_it_applies(ctx: &Ctx, scope: &Scope, key: Option<&str>) {
    let Ok(reg) = ctx.store.load() else { return };
    let live: Vec<&str> = reg
        .instances
        .values()
        .filter(|i| i.status.is_live())
        .filter(|i| match scope {
            Scope::Instance(id) => &i.id == id,
            Scope::Global => true,
        })
        .filter(|i| fixed_at_start(key, &i.mode))
        .map(|i| i.id.as_str())
        .collect();
    let key = key.unwrap_or("the change");
    match live.as_slice() {
        [] => {}
        [id] => eprintln!(
            "{id} is running: {key} takes effect at the next start (ai-sessctl restart {id})"
        ),
        ids => eprintln!(
            "{} instances are running: {key} takes effect at their next start (ai-sessctl restart ID; running: {})",
            ids.len(),
            ids.join(", ")
        ),
    }
}

/// Tells the shells about a changed agent list (their prompt hook reads
/// agents.list and defines the functions), and the user about a new agent.
fn agents_changed(ctx: &Ctx, before: &[crate::core::types::Mode]) {
    let Ok(now) = config::agent_names(&ctx.dirs) else {
        return;
    };
    if let Err(e) = crate::service::shell::write_agents(&ctx.dirs, &now) {
        eprintln!("ai-sessctl: warning: {e}");
    }
    for mode in now.iter().filter(|m| !before.contains(m)) {
        eprintln!(
            "new agent {mode}: shells with the integration have a `{mode}` command from their next prompt"
        );
    }
}

/// An invalid `config --edit`: says why, and on a terminal offers to edit
/// it again.
fn edit_again(e: &Error) -> bool {
    use std::io::IsTerminal;
    eprintln!("ai-sessctl: error: {e}");
    std::io::stdin().is_terminal() && ask("edit again? [Y/n] ")
}

fn ask(question: &str) -> bool {
    eprint!("{question}");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    !line.trim().to_ascii_lowercase().starts_with('n')
}
