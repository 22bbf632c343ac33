//! Resource samples of running instances (`stats`, the dashboard).

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::features::monitor::stats::{sample_all, Sample};
use crate::state::context::Ctx;

/// Samples running instances (or one) and records them (and any alert).
pub fn sample(ctx: &Ctx, id: Option<&InstanceId>) -> Result<Vec<Sample>> {
    let reg = crate::lifecycle::refresh(ctx)?;
    if let Some(id) = id {
        let inst = reg.get(id).ok_or_else(|| Error::not_found(id))?;
        if inst.status != crate::core::types::Status::Running {
            return Err(Error::Invalid(format!("{id} is {}", inst.status)));
        }
    }
    let live: Vec<_> = reg
        .instances
        .values()
        .filter(|i| i.status == crate::core::types::Status::Running)
        .filter(|i| id.is_none_or(|id| &i.id == id))
        .collect();
    let samples = sample_all(&live);
    crate::features::monitor::alerts::record(ctx, &samples)?;
    Ok(samples)
}
