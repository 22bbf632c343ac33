//! `image build`: builds an agent's shipped Dockerfile through the engine,
//! streaming the build output.

use super::Ctx;
use crate::error::{Error, Result};
use crate::runtime::docker::DockerEngine;
use crate::types::Mode;
use futures_util::StreamExt;
use std::io::Write;

/// The Dockerfiles shipped in the binary, by agent.
const DOCKERFILES: &[(&str, &str)] = &[
    ("claude", include_str!("../../images/claude/Dockerfile")),
    ("gemini", include_str!("../../images/gemini/Dockerfile")),
];

fn context_tar(dockerfile: &str) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|_| tar.into_inner())
        .map_err(|e| Error::Other(format!("build context: {e}")))
}

pub fn build(ctx: &Ctx, mode: Option<Mode>) -> Result<u8> {
    let targets: Vec<&(&str, &str)> = match &mode {
        Some(m) => vec![DOCKERFILES
            .iter()
            .find(|(n, _)| *n == m.as_str())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no Dockerfile ships for agent {m}; build your image and set agents.{m}.image"
                ))
            })?],
        None => DOCKERFILES.iter().collect(),
    };
    let engine = DockerEngine::connect()?;
    for (name, dockerfile) in targets {
        let mode = Mode::parse(name)?;
        let tag = crate::config::load_for(&ctx.dirs, &mode, None)?.agent.image;
        eprintln!("building {tag} for {name}");
        let tar = context_tar(dockerfile)?;
        let opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .t(&tag)
            .rm(true)
            .build();
        let result: Result<()> = engine.block_on(async {
            let body = bollard::body_full(tar.into());
            let mut stream = engine.client().build_image(opts, None, Some(body));
            let mut err = std::io::stderr();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| Error::Other(format!("build {tag}: {e}")))?;
                if let Some(s) = info.stream {
                    let _ = err.write_all(s.as_bytes());
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::Other(format!("build {tag}: {e}")));
                }
            }
            Ok(())
        });
        result?;
        eprintln!("built {tag}");
    }
    Ok(0)
}
