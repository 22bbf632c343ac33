//! `net log`, `net allow` and the hidden `net proxy`.

use super::Ctx;
use crate::cli::NetCmd;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::features::egress::{self, rules::Rule};
use crate::state::config::{self, EgressPolicy, Scope};
use crate::state::events::{Event, Level};
use serde_json::json;

pub fn net(ctx: &Ctx, cmd: NetCmd) -> Result<u8> {
    match cmd {
        NetCmd::Log { id, follow, json } => log(ctx, id, follow, json),
        NetCmd::Allow { id, host } => allow(ctx, &id, &host),
        NetCmd::Proxy {
            rules,
            events,
            listen,
            forward,
            watch,
            forbid,
            broker_settings,
            broker_listen,
            meter,
            meter_all,
        } => {
            let forward = forward
                .iter()
                .map(|f| {
                    let (port, target) = f
                        .split_once('=')
                        .ok_or_else(|| Error::Usage(format!("--forward {f}: PORT=HOST:PORT")))?;
                    let port = port
                        .parse()
                        .map_err(|_| Error::Usage(format!("--forward {f}: bad port")))?;
                    Ok((port, target.to_owned()))
                })
                .collect::<Result<Vec<_>>>()?;
            let broker = match (broker_settings, broker_listen, meter) {
                (Some(settings), Some(listen), Some(meter)) => {
                    Some(egress::broker::server::BrokerArgs {
                        settings,
                        listen,
                        meter,
                        meter_all,
                    })
                }
                _ => None,
            };
            egress::proxy::run(egress::proxy::ProxyArgs {
                rules,
                events,
                listen,
                forward,
                watch,
                forbid,
                broker,
            })
            .map(|_| 0)
        }
    }
}

fn is_refusal(e: &Event, id: Option<&InstanceId>) -> bool {
    e.component == "egress"
        && e.level >= Level::Warn
        && id.is_none_or(|id| {
            e.metadata.get("instance").and_then(|v| v.as_str()) == Some(id.as_str())
        })
}

/// One refusal as a line; what the box sent is made printable.
fn line(e: &Event) -> String {
    let get = |k: &str| match e.metadata.get(k) {
        Some(serde_json::Value::String(s)) => crate::core::untrusted::printable(s),
        Some(v) => crate::core::untrusted::printable(&v.to_string()),
        None => String::new(),
    };
    let what = match e.metadata.get("dropped").and_then(|v| v.as_u64()) {
        Some(n) => format!("({n} more refusals not logged: rate limit)"),
        None => format!("{}:{} {}", get("host"), get("port"), get("reason")),
    };
    format!(
        "{} {:<24} {what}",
        e.timestamp
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        get("instance"),
    )
}

/// Refused connections from the event feed (every proxy's own log),
/// oldest first; `--follow` keeps printing new ones.
fn log(ctx: &Ctx, id: Option<InstanceId>, follow: bool, json: bool) -> Result<u8> {
    if let Some(id) = &id {
        let known = ctx.store.load()?.get(id).is_some();
        if !known {
            return Err(Error::not_found(id));
        }
    }
    super::events::print_feed(ctx, follow, |e, out| {
        if !is_refusal(e, id.as_ref()) {
            return Ok(());
        }
        if json {
            super::events::print_json_line(e, out)
        } else {
            writeln!(out, "{}", line(e))
        }
    })
}

/// Adds `host` to the instance's `networking.allow` (its own config file;
/// lists of all layers add up) and rewrites the rules its proxy re-reads.
fn allow(ctx: &Ctx, id: &InstanceId, host: &str) -> Result<u8> {
    let rule = Rule::parse(host)?.to_string();
    let reg = ctx.store.load()?;
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?.clone();
    let scope = Scope::Instance(id.clone());
    let layer = config::read_layer(&scope.file(&ctx.dirs))?;
    let mut own: Vec<String> = layer
        .get("networking")
        .and_then(|n| n.get("allow"))
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if own.contains(&rule) {
        println!("{rule} is already allowed for {id}");
    } else {
        own.push(rule.clone());
        let value = toml::Value::Array(own.into_iter().map(toml::Value::String).collect());
        config::set_value(&ctx.dirs, &scope, "networking.allow", &value.to_string())?;
        println!(
            "allowed {rule} for {id} (in {})",
            scope.file(&ctx.dirs).display()
        );
    }
    ctx.events().log(
        Level::Info,
        "egress",
        "host allowed",
        json!({"instance": id, "rule": rule}),
    );
    let eff = ctx.effective(id)?;
    let policy = inst.egress.unwrap_or(eff.settings.networking.egress);
    match policy {
        EgressPolicy::Allowlist if inst.status.is_live() => {
            egress::write_rules(&ctx.dirs, id, &eff)?;
            // On an engine on another machine its proxy gets them sent.
            match egress::remote::push(&ctx.dirs, id) {
                Ok(()) => println!("applied: {id}'s proxy uses it from its next connection"),
                Err(e) => eprintln!(
                    "ai-sessctl: warning: saved, but not sent to {id}'s proxy ({e}); it applies from its next start"
                ),
            }
        }
        EgressPolicy::Allowlist => println!("{id} is not running; it applies from its next start"),
        EgressPolicy::Open => println!(
            "{id} runs with egress = \"open\" (everything is reachable); the rule applies under \"allowlist\""
        ),
        EgressPolicy::None => println!(
            "{id} runs with egress = \"none\" (no proxy, nothing reachable); restart it with --egress allowlist to use the rule"
        ),
    }
    Ok(0)
}
