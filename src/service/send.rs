//! `send ID TEXT`: a message typed into the agent as if the user had typed
//! it and pressed Enter (the CLI, the API, the dashboard's review comments).
//! Only when the agent waits for input, unless forced: typed while it works,
//! the text lands in the middle of whatever its terminal UI is doing.

use crate::core::error::{Error, Result};
use crate::core::types::{Activity, InstanceId, Status};
use crate::features::activity;
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde_json::json;

/// The longest message typed (the dashboard can send a whole review).
pub const MAX_TEXT: usize = 64 * 1024;

/// What was sent, for the front ends to report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sent {
    pub id: InstanceId,
    /// What the agent was doing when typed into.
    pub activity: Activity,
    pub chars: usize,
}

/// Types `text` into `id`'s agent; `who` says through what (the event log).
pub fn send(ctx: &Ctx, id: &InstanceId, text: &str, force: bool, who: &str) -> Result<Sent> {
    if text.trim().is_empty() {
        return Err(Error::Usage("nothing to send: the message is empty".into()));
    }
    if text.len() > MAX_TEXT {
        return Err(Error::Usage(format!(
            "the message is {} bytes; at most {MAX_TEXT} are sent",
            text.len()
        )));
    }
    let reg = crate::lifecycle::refresh(ctx)?;
    let _ = activity::sync(ctx);
    let reg = ctx.store.load().unwrap_or(reg);
    let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
    match inst.status {
        Status::Running => {}
        Status::Paused => {
            return Err(Error::Invalid(format!(
                "{id} is paused: `ai-sessctl resume {id}` first"
            )))
        }
        other => {
            return Err(Error::Invalid(format!(
                "{id} is {other}: no agent to type into (`ai-sessctl start {id}` starts it again)"
            )))
        }
    }
    if !force && !inst.activity.wants_user() {
        let why = match inst.activity {
            Activity::Working => format!("{id}'s agent is working"),
            _ => format!("{id}'s agent has not said it is waiting for input"),
        };
        return Err(Error::Invalid(format!(
            "{why}; typed now, the message would land in the middle of it. \
             Send it when the agent waits, or `--force` to type it now"
        )));
    }
    crate::lifecycle::input::type_message(inst, text)?;
    ctx.events().log(
        Level::Info,
        "send",
        &format!("message typed into the agent {who}"),
        json!({"instance": id, "chars": text.chars().count(), "activity": inst.activity, "forced": force}),
    );
    Ok(Sent {
        id: id.clone(),
        activity: inst.activity,
        chars: text.chars().count(),
    })
}
