//! `ai-sessctl login MODE`: the agent's own login flow in a throwaway
//! container on the agent's shared state, attached to this terminal, so
//! the next instance of the agent anywhere is logged in.

use crate::config::Effective;
use crate::error::{Error, Result};
use crate::paths::{ensure_private_dir, StateDir};
use crate::runtime::attach::{self, AttachEnd};
use crate::runtime::docker::{DockerEngine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::types::Mode;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters as q;
use std::collections::HashMap;

/// Runs the login container; returns the login command's exit code.
pub fn login_in_container(dirs: &StateDir, mode: &Mode, eff: &Effective) -> Result<i64> {
    let engine = DockerEngine::connect()?;
    let agent = &eff.agent;
    if agent.image.is_empty() || !engine.image_exists(&agent.image)? {
        return Err(Error::NotFound(format!(
            "image {:?} for {mode} is not built; build it with `ai-sessctl image build {mode}`",
            agent.image
        )));
    }
    let state = dirs.agent_state(mode);
    dirs.ensure_sub(&dirs.states_dir())?;
    ensure_private_dir(&state)?;
    let cmd = agent
        .login_command
        .clone()
        .unwrap_or_else(|| agent.command.clone());
    let mut env: Vec<String> = vec![format!("AI_MODE={mode}")];
    for name in &agent.env_passthrough {
        if let Some(v) = std::env::var_os(name) {
            env.push(format!("{name}={}", v.to_string_lossy()));
        }
    }
    for name in ["TERM", "COLORTERM", "LANG"] {
        if let Some(v) = std::env::var_os(name) {
            env.push(format!("{name}={}", v.to_string_lossy()));
        }
    }
    let home = crate::runtime::docker::home_label(dirs);
    let name = format!("ai-login-{mode}-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(agent.image.clone()),
        cmd: Some(cmd),
        env: Some(env),
        labels: Some(HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HOME_LABEL.to_owned(), home),
            ("ai.login".to_owned(), mode.to_string()),
        ])),
        tty: Some(true),
        open_stdin: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some(format!(
            "{}:{}",
            nix::unistd::getuid(),
            nix::unistd::getgid()
        )),
        host_config: Some(HostConfig {
            init: Some(true),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            memory: Some(eff.settings.resources.memory.limit.0 as i64),
            mounts: Some(vec![Mount {
                source: Some(state.to_string_lossy().into_owned()),
                target: Some(agent.state_dir.clone()),
                typ: Some(MountType::BIND),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let docker = engine.client();
    let keys = attach::parse_detach_keys(&eff.settings.global.detach_keys)?;
    engine.block_on(async {
        let created = docker
            .create_container(
                Some(q::CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| Error::Engine(format!("create login container: {e}")))?;
        let result = async {
            docker
                .start_container(&created.id, None::<q::StartContainerOptions>)
                .await
                .map_err(|e| Error::Engine(format!("start login container: {e}")))?;
            attach::attach_container(docker, &created.id, &keys, true).await
        }
        .await;
        // Throwaway: gone whatever happened (detached, failed or done).
        let _ = docker
            .remove_container(
                &created.id,
                Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        match result? {
            AttachEnd::Exited(code) => Ok(code),
            AttachEnd::Detached => Err(Error::Other(
                "detached: the login container was removed; run `ai-sessctl login` again to finish"
                    .into(),
            )),
        }
    })
}
