//! `image build`: builds the agents' images through the engine, streaming
//! the build output to the terminal.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::Mode;
use crate::engine::Engine;
use crate::service::image::{self, Failed, Options};
use std::io::Write;

pub fn build(
    ctx: &Ctx,
    mode: Option<Mode>,
    base: Option<String>,
    network: Option<String>,
    no_cache: bool,
) -> Result<u8> {
    let base = base
        .or_else(|| ctx.global().ok().and_then(|s| s.images.base))
        .filter(|b| !b.trim().is_empty());
    let targets = image::targets(ctx, mode.as_ref())?;
    let engine = Engine::shared()?;
    let total = targets.len();
    let opts = Options {
        base,
        network,
        no_cache,
    };
    let mut failed: Vec<String> = Vec::new();
    for target in targets {
        let (name, tag) = (target.mode.to_string(), target.tag.clone());
        match &opts.base {
            Some(b) => eprintln!("building {tag} for {name} on {b}"),
            None => eprintln!("building {tag} for {name}"),
        }
        let mut err = std::io::stderr();
        let result = image::build(engine, target, &opts, &mut |s| {
            let _ = err.write_all(s.as_bytes());
        });
        match result {
            Ok(()) => eprintln!("built {tag}"),
            Err(Failed::NeedsNetwork(e)) => {
                let base_too = match &opts.base {
                    Some(_) => "",
                    None => "the base image, ",
                };
                eprintln!(
                    "ai-sessctl: error: building {tag} for {name} needs network access: \
                     to fetch {base_too}Debian packages and {name}'s CLI from the npm registry ({e})"
                );
                eprintln!("  hint: {}", crate::service::image::ways_out(&name));
                failed.push(name);
            }
            Err(Failed::Other(e)) => {
                eprintln!("ai-sessctl: error: building {tag} for {name} failed: {e}");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(Error::Other(format!(
            "{} of {total} images not built ({}); see above",
            failed.len(),
            failed.join(", ")
        )))
    }
}
