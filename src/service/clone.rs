//! `fetch`: a clone instance's work brought back into the host repository,
//! for the CLI, the API and `diff`.

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::lifecycle::docker::{
    object_name, DockerEngine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE,
};
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde_json::json;
use std::collections::HashMap;

pub use crate::features::clone::Fetched;

/// Fetches the branch of the clone instance `id` (and, with
/// `uncommitted`, a commit of its uncommitted changes) into its host
/// repository, as `refs/remotes/ai-sessions/<id>[-uncommitted]`.
pub fn fetch(ctx: &Ctx, id: &InstanceId, uncommitted: bool) -> Result<Fetched> {
    fetch_as(ctx, id, uncommitted, None)
}

/// [`fetch`], the commit of the uncommitted changes (if any) made with
/// `message` (`land --commit MSG`).
pub fn fetch_as(
    ctx: &Ctx,
    id: &InstanceId,
    uncommitted: bool,
    message: Option<&str>,
) -> Result<Fetched> {
    let inst = crate::service::control::lookup(ctx, id)?;
    let Some(info) = &inst.clone else {
        return Err(Error::Invalid(format!(
            "{id} is not a clone instance: its project {} is mounted, its work is there already",
            inst.project_path
        )));
    };
    crate::lifecycle::reachable(&inst)?;
    let engine = DockerEngine::connect()?;
    let home = ctx.dirs.home_label();
    let volume = crate::features::clone::volume_name(&object_name(id, &home));
    if !engine.volume_exists(&volume)? {
        return Err(Error::Invalid(format!(
            "{id} has no volume {volume} (it never started): nothing to fetch"
        )));
    }
    let image = match inst.image.clone() {
        Some(i) => i,
        None => ctx.effective(id)?.agent.image,
    };
    let source = crate::features::clone::Source {
        instance: id.as_str(),
        volume: &volume,
        image: &image,
        labels: HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), home.clone()),
        ]),
    };
    let fetched = crate::features::clone::fetch(&engine, &source, info, id, uncommitted, message)?;
    ctx.events().log(
        Level::Info,
        "clone",
        "fetched",
        json!({"instance": id, "commit": fetched.commit, "uncommitted": fetched.uncommitted}),
    );
    Ok(fetched)
}
