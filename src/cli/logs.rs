//! `logs`: a live container's output, or the output saved when it ended.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::lifecycle::docker::DockerEngine;

pub fn logs(ctx: &Ctx, id: InstanceId, follow: bool, tail: Option<usize>) -> Result<u8> {
    let reg = crate::lifecycle::refresh(ctx)?;
    let inst = reg.get(&id);
    if let Some(cid) = inst
        .and_then(|i| i.container_id.clone())
        .filter(|_| inst.is_some_and(|i| i.status.is_live()))
    {
        let engine = DockerEngine::connect()?;
        let mut out = std::io::stdout();
        match engine.block_on(engine.copy_logs(&cid, follow, tail, &mut out)) {
            Err(Error::NotFound(_)) => {}
            other => return other.map(|_| 0),
        }
    }
    let path = ctx.dirs.instance_log(&id);
    // Kept (`auto_cleanup = false`) and not saved: the container still
    // holds the output.
    let kept = inst
        .filter(|i| !i.status.is_live())
        .and_then(|i| i.container_id.clone())
        .filter(|_| std::fs::symlink_metadata(&path).is_err());
    if let Some(cid) = kept {
        if let Ok(engine) = DockerEngine::connect() {
            let mut out = std::io::stdout();
            match engine.block_on(engine.copy_logs(&cid, false, tail, &mut out)) {
                Err(Error::NotFound(_)) => {}
                other => return other.map(|_| 0),
            }
        }
    }
    // Read from the end: the file may hold tens of megabytes.
    match crate::engine::logfile::copy_tail(&path, tail, &mut std::io::stdout().lock()) {
        Ok(true) => {
            if follow {
                eprintln!("({id} is not running; that was its saved output)");
            }
            Ok(0)
        }
        Err(e) => Err(e),
        Ok(false) if inst.is_some() => Err(Error::NotFound(format!(
            "no output recorded for {id}{}",
            if inst.is_some_and(|i| i.runtime == Some(crate::state::registry::RuntimeKind::Host)) {
                " (a foreground host instance writes to its own terminal)"
            } else {
                ""
            }
        ))),
        Ok(false) => Err(Error::not_found(&id)),
    }
}
