//! One module per command group; `dispatch` routes a parsed command.

pub mod args;
mod config;
mod dashboard;
mod diff;
mod doctor;
mod events;
mod health;
mod image;
mod land;
mod lifecycle;
mod list;
mod login;
mod logs;
mod net;
pub mod output;
mod port;
mod registry;
mod run;
mod send;
mod serve;
mod shell;
mod spend;
mod stats;
mod top;
mod worktree;

use crate::core::error::{Error, Result};
pub use crate::state::context::Ctx;
pub use args::*;

pub fn dispatch(command: Command) -> Result<u8> {
    // What the event log and the registry's prompt file cannot return.
    crate::core::warning::set_sink(output::warnings_one);
    let ctx = Ctx::from_env()?;
    match command {
        Command::Run(a) => run::run(&ctx, a),
        Command::Start(a) => run::start(&ctx, run::request(a)),
        Command::Stop { ids, all, force } => lifecycle::stop(&ctx, ids, all, force),
        Command::Keep { id } => shell::keep(&ctx, id),
        Command::Restart(a) => lifecycle::restart(&ctx, a.id),
        Command::Attach(a) => run::attach(&ctx, a.id),
        Command::Send { id, text, force } => send::send(&ctx, id.id, text, force),
        Command::Pause(a) => lifecycle::pause(&ctx, a.id, true),
        Command::Resume { id } => lifecycle::resume(&ctx, id),
        Command::Rm(a) => lifecycle::rm_command(&ctx, a),
        Command::Land(a) => land::land(&ctx, a),
        Command::Gc { dry_run } => lifecycle::gc(&ctx, dry_run),
        Command::List {
            status,
            json,
            quiet,
        } => list::list(&ctx, status, json, quiet),
        Command::Show { id, json } => list::show(&ctx, id.id, json),
        Command::Find {
            project,
            mode,
            json,
        } => list::find(&ctx, &project, mode, json),
        Command::Stats { id, watch, json } => stats::stats(&ctx, id, watch, json),
        Command::Spend { id, since, json } => spend::spend(&ctx, id, since, json),
        Command::Top => top::top(&ctx),
        Command::Health(crate::cli::HealthCmd::Check { id, json }) => health::check(&ctx, id, json),
        Command::Health(crate::cli::HealthCmd::Watch) => health::watch(&ctx),
        Command::Heal(a) => health::heal(&ctx, a.id),
        Command::Logs {
            id,
            follow,
            tail,
            raw,
        } => logs::logs(&ctx, id, follow, tail, raw),
        Command::Fetch {
            id,
            uncommitted,
            json,
        } => diff::fetch(&ctx, id, uncommitted, json),
        Command::Diff {
            id,
            stat,
            json,
            no_pager,
        } => diff::diff(&ctx, id, diff::Shape::of(stat, json), no_pager),
        Command::Events {
            follow,
            json,
            since,
            level,
        } => events::events(&ctx, follow, json, since, level),
        Command::Config(args) => config::config(&ctx, args),
        Command::Dashboard { json } => dashboard::dashboard(&ctx, json),
        Command::Port(p) => port::port(&ctx, p),
        Command::Registry(r) => registry::registry(&ctx, r),
        Command::Worktree(w) => worktree::worktree(&ctx, w),
        Command::Image(crate::cli::ImageCmd::Build {
            mode,
            base,
            network,
            no_cache,
        }) => image::build(&ctx, mode, base, network, no_cache),
        Command::Login { mode, from_host } => login::login(&ctx, mode, from_host),
        Command::State(crate::cli::StateCmd::Migrate) => login::migrate(&ctx),
        Command::Net(n) => net::net(&ctx, n),
        Command::Doctor => doctor::doctor(&ctx),
        Command::Serve { addr, allow_remote } => serve::serve(&ctx, addr, allow_remote),
        Command::Init { shell } => shell::init(&ctx, shell),
        Command::Completions { shell } => shell::completions(shell),
        Command::Prompt => shell::prompt(&ctx),
        Command::ShellExit {
            pid, warn: true, ..
        } => shell::exit_warning(&ctx, pid),
        Command::ShellExit { pid, now, .. } => shell::shell_exit(&ctx, pid, now),
        Command::Notifier => crate::features::activity::watch::run(&ctx).map(|_| 0),
        Command::ReapNetworks { containers, names } => {
            lifecycle::reap_networks(&ctx, containers, names)
        }
        Command::FillNetworkPool => lifecycle::fill_network_pool(&ctx),
    }
}

/// A command line clap refused: its message, plus the closest instance id
/// when the word refused was meant as one (`show apiclaude`), as `report`
/// does for a well-formed id the registry does not hold.
pub fn usage_error(e: clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue};
    let _ = e.print();
    let is_id =
        matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a)) if a.contains("ID"));
    if let (true, Some(ContextValue::String(typed))) = (is_id, e.get(ContextKind::InvalidValue)) {
        let ids = crate::service::completion::ids();
        if let Some(id) = crate::core::error::closest(typed, ids.iter().map(|(id, _)| id.as_str()))
        {
            eprintln!("  did you mean {id}?");
        }
    }
    u8::try_from(e.exit_code()).unwrap_or(2)
}

/// Prints `ai-sessctl: error: …` and a hint; returns the exit code.
pub fn report(e: &Error) -> u8 {
    let on = crate::cli::output::color_stderr();
    eprintln!(
        "ai-sessctl: {} {e}",
        crate::cli::output::paint("error:", "31;1", on)
    );
    if let Some(h) = e.hint() {
        eprintln!("  hint: {h}");
    }
    if let Error::NoInstance(typed) = e {
        let ids = crate::service::completion::ids();
        if let Some(id) = crate::core::error::closest(typed, ids.iter().map(|(id, _)| id.as_str()))
        {
            eprintln!("  did you mean {id}?");
        }
    }
    e.exit_code() as u8
}
