//! `send ID TEXT|-`: a message typed into the agent.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use std::io::Read;

pub fn send(ctx: &Ctx, id: InstanceId, text: Vec<String>, force: bool) -> Result<u8> {
    let text = if text.len() == 1 && text[0] == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .take(crate::service::send::MAX_TEXT as u64 + 1)
            .read_to_string(&mut buf)
            .map_err(|e| Error::Usage(format!("reading the message from stdin: {e}")))?;
        buf
    } else {
        text.join(" ")
    };
    let sent = crate::service::send::send(ctx, &id, &text, force, "from the command line")?;
    println!("Sent to {} ({} characters).", sent.id, sent.chars);
    Ok(0)
}
