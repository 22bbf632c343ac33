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

/// A directory (with its Dockerfile) as a build context; symlinks are
/// archived as links, never followed out of the directory.
fn dir_tar(dir: &std::path::Path) -> Result<Vec<u8>> {
    if !dir.join("Dockerfile").is_file() {
        return Err(Error::Invalid(format!(
            "{}: no Dockerfile in the build context",
            dir.display()
        )));
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)
        .and_then(|_| tar.into_inner())
        .map_err(|e| Error::Other(format!("build context {}: {e}", dir.display())))
}

pub fn build(ctx: &Ctx, mode: Option<Mode>) -> Result<u8> {
    let settings = ctx.global()?;
    // Agents with a build_context of their own, then the shipped ones.
    let mut targets: Vec<(Mode, Vec<u8>)> = Vec::new();
    for (name, agent) in &settings.agents {
        let Ok(m) = Mode::parse(name) else { continue };
        if mode.as_ref().is_some_and(|want| want != &m) {
            continue;
        }
        let tar = match (
            &agent.build_context,
            DOCKERFILES.iter().find(|(n, _)| n == name),
        ) {
            (Some(dir), _) => dir_tar(std::path::Path::new(dir))?,
            (None, Some((_, dockerfile))) => context_tar(dockerfile)?,
            (None, None) => continue,
        };
        targets.push((m, tar));
    }
    if targets.is_empty() {
        return Err(Error::NotFound(match &mode {
            Some(m) => format!(
                "no Dockerfile for agent {m}: set agents.{m}.build_context to a directory with one, or build your image and set agents.{m}.image"
            ),
            None => "no agent has a Dockerfile to build".into(),
        }));
    }
    let engine = DockerEngine::connect()?;
    for (mode, tar) in targets {
        let name = mode.as_str();
        let tag = crate::config::load_for(&ctx.dirs, &mode, None)?.agent.image;
        eprintln!("building {tag} for {name}");
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
