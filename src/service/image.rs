//! Building agent images: the shipped Dockerfiles (or an agent's own build
//! context) with the configured CA certificates, through the engine.

use crate::core::error::{Error, Result};
use crate::core::types::Mode;
use crate::engine::image::Build;
use crate::engine::Engine;
use crate::state::context::Ctx;
use std::collections::HashMap;

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

pub fn needs_network(output: &str) -> bool {
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

/// An image to build: for which agent, its tag, its context (a tar).
pub struct Target {
    pub mode: Mode,
    pub tag: String,
    pub context: Vec<u8>,
}

/// What `image build` builds: every agent with a Dockerfile (shipped, or
/// its own `build_context`), or just `mode`'s. Configured CA files are read
/// now: a bad one is an error before anything is built.
pub fn targets(ctx: &Ctx, mode: Option<&Mode>) -> Result<Vec<Target>> {
    let settings = ctx.global()?;
    let cas = read_cas(&settings.images.ca_certificates)?;
    // Agents with a build_context of their own, then the shipped ones.
    let mut targets = Vec::new();
    for (name, agent) in &settings.agents {
        let Ok(m) = Mode::parse(name) else { continue };
        if mode.is_some_and(|want| want != &m) {
            continue;
        }
        let context = match (
            &agent.build_context,
            DOCKERFILES.iter().find(|(n, _)| n == name),
        ) {
            (Some(dir), _) => dir_tar(std::path::Path::new(dir))?,
            (None, Some((_, dockerfile))) => context_tar(dockerfile, &cas)?,
            (None, None) => continue,
        };
        let tag = crate::state::config::load_for(&ctx.dirs, &m, None)?
            .agent
            .image;
        targets.push(Target {
            mode: m,
            tag,
            context,
        });
    }
    if targets.is_empty() {
        return Err(Error::NotFound(match mode {
            Some(m) => format!(
                "no Dockerfile for agent {m}: set agents.{m}.build_context to a directory with one, or build your image and set agents.{m}.image"
            ),
            None => "no agent has a Dockerfile to build".into(),
        }));
    }
    Ok(targets)
}

/// The two ways to an agent's image without a registry, for the build's
/// error and `doctor`.
pub fn ways_out(mode: &str) -> String {
    format!(
        "without a registry, build on a Debian-like image you have: `ai-sessctl image build {mode} --base LOCAL_IMAGE`; \
         or run an image you have that holds {mode}'s CLI: `ai-sessctl config set --global agents.{mode}.image IMAGE`"
    )
}

/// How to build: on which base image, with which network, with the cache.
pub struct Options {
    pub base: Option<String>,
    pub network: Option<String>,
    pub no_cache: bool,
}

/// Builds one target; the build's output goes to `progress` as it comes.
/// A failure says whether the build lacked network access.
pub fn build(
    engine: &Engine,
    target: Target,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> std::result::Result<(), Failed> {
    let mut build_args = HashMap::new();
    if let Some(b) = &opts.base {
        build_args.insert("BASE".to_owned(), b.clone());
    }
    let build = Build {
        tag: target.tag,
        build_args,
        no_cache: opts.no_cache,
        network: opts.network.clone(),
        ..Build::default()
    };
    // The output's tail is kept to tell a missing network from other failures.
    let mut seen = String::new();
    let result = engine.build_image(target.context, &build, &mut |s| {
        progress(s);
        seen.push_str(s);
        if seen.len() > 64 * 1024 {
            seen.drain(..seen.len() - 32 * 1024);
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = e.to_string();
            match needs_network(&seen) || needs_network(&e) {
                true => Err(Failed::NeedsNetwork(e)),
                false => Err(Failed::Other(e)),
            }
        }
    }
}

/// Why a build failed.
pub enum Failed {
    NeedsNetwork(String),
    Other(String),
}
