//! `image build`: builds an agent's shipped Dockerfile through the engine,
//! streaming the build output.

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::core::types::Mode;
use crate::lifecycle::docker::DockerEngine;
use futures_util::StreamExt;
use std::io::Write;

/// The Dockerfiles shipped in the binary, by agent.
const DOCKERFILES: &[(&str, &str)] = &[
    ("claude", include_str!("../../images/claude/Dockerfile")),
    ("gemini", include_str!("../../images/gemini/Dockerfile")),
];

/// Where extra CA certificates go in a shipped Dockerfile's context (the
/// Dockerfiles copy this directory and run `update-ca-certificates`).
const CA_DIR: &str = "ca-certificates";

fn add_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, path, data)
}

/// A shipped Dockerfile's context: the Dockerfile and the extra CA
/// certificates (`cas`: file name in the context, PEM content).
fn context_tar(dockerfile: &str, cas: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = || -> std::io::Result<Vec<u8>> {
        add_file(&mut tar, "Dockerfile", dockerfile.as_bytes())?;
        add_file(
            &mut tar,
            &format!("{CA_DIR}/README"),
            b"Extra CA certificates ([images] ca_certificates), trusted in the image.\n",
        )?;
        for (name, pem) in cas {
            add_file(&mut tar, &format!("{CA_DIR}/{name}"), pem)?;
        }
        Ok(Vec::new())
    };
    add().map_err(|e| Error::Other(format!("build context: {e}")))?;
    tar.into_inner()
        .map_err(|e| Error::Other(format!("build context: {e}")))
}

/// The configured CA certificates, read now: a missing or non-PEM file is
/// an error before anything is built.
fn read_cas(paths: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pem = std::fs::read(p)
                .map_err(|e| Error::Invalid(format!("images.ca_certificates: {p}: {e}")))?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::Invalid(format!(
                    "images.ca_certificates: {p}: not a PEM certificate (no BEGIN CERTIFICATE line)"
                )));
            }
            // update-ca-certificates takes only *.crt files.
            Ok((format!("extra-{i}.crt"), pem))
        })
        .collect()
}

/// Words in a failed build's output that mean the network was missing.
const NETWORK_SIGNS: &[&str] = &[
    "Temporary failure resolving",
    "Could not resolve",
    "Failed to fetch",
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
    "getaddrinfo",
    "etwork is unreachable",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "TLS handshake timeout",
];

fn needs_network(output: &str) -> bool {
    NETWORK_SIGNS.iter().any(|s| output.contains(s))
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

pub fn build(
    ctx: &Ctx,
    mode: Option<Mode>,
    base: Option<String>,
    network: Option<String>,
    no_cache: bool,
) -> Result<u8> {
    let settings = ctx.global()?;
    let base = base
        .or_else(|| settings.images.base.clone())
        .filter(|b| !b.trim().is_empty());
    let cas = read_cas(&settings.images.ca_certificates)?;
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
            (None, Some((_, dockerfile))) => context_tar(dockerfile, &cas)?,
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
    let total = targets.len();
    let mut failed: Vec<String> = Vec::new();
    for (mode, tar) in targets {
        let name = mode.as_str();
        let tag = crate::state::config::load_for(&ctx.dirs, &mode, None)?
            .agent
            .image;
        match &base {
            Some(b) => eprintln!("building {tag} for {name} on {b}"),
            None => eprintln!("building {tag} for {name}"),
        }
        let mut args = std::collections::HashMap::new();
        if let Some(b) = &base {
            args.insert("BASE".to_owned(), b.clone());
        }
        let mut opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .t(&tag)
            .rm(true)
            // A failed step leaves no container behind either.
            .forcerm(true)
            .nocache(no_cache)
            .buildargs(&args);
        if let Some(n) = &network {
            opts = opts.networkmode(n);
        }
        let opts = opts.build();
        // The output goes to the user as it comes; its tail is kept to tell
        // a missing network from other failures.
        let mut seen = String::new();
        let result: Result<()> = engine.block_on(async {
            let body = bollard::body_full(tar.into());
            let mut stream = engine.client().build_image(opts, None, Some(body));
            let mut err = std::io::stderr();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| Error::Other(format!("{e}")))?;
                if let Some(s) = info.stream {
                    let _ = err.write_all(s.as_bytes());
                    seen.push_str(&s);
                    if seen.len() > 64 * 1024 {
                        seen.drain(..seen.len() - 32 * 1024);
                    }
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::Other(e));
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => eprintln!("built {tag}"),
            Err(e) => {
                let e = e.to_string();
                if needs_network(&seen) || needs_network(&e) {
                    let base_too = match &base {
                        Some(_) => String::new(),
                        None => "the base image, ".to_owned(),
                    };
                    eprintln!(
                        "ai-sessctl: error: building {tag} for {name} needs network access: \
                         to fetch {base_too}Debian packages and {name}'s CLI from the npm registry ({e})"
                    );
                } else {
                    eprintln!("ai-sessctl: error: building {tag} for {name} failed: {e}");
                }
                failed.push(name.to_owned());
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
