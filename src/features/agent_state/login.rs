//! `ai-sessctl login MODE`: the agent's own login flow in a throwaway
//! container, attached to this terminal. The container gets a fresh empty
//! state dir (no settings, hooks or MCP servers of any instance run in
//! it), no API key (nothing from `env_passthrough`) and is refused unless
//! the agent's egress policy lets it out; afterwards only the login file
//! is copied out of it, into `states/<mode>/`, which every instance of
//! the agent mounts read-only, and the answers to its first-run questions
//! (see `answers`).

use super::credential_files;
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::Mode;
use crate::core::untrusted::tree::Tree;
use crate::engine::attach::{self, AttachEnd};
use crate::engine::container::{Bind, ContainerSpec, Created};
use crate::engine::{Engine, HOME_LABEL, MANAGED_LABEL, MANAGED_VALUE};
use crate::state::config::{Effective, EgressPolicy};
use std::ffi::OsStr;

/// Label of a login container, naming the agent; with it, the
/// `ai-sessctl` process that runs it (see `engine::scratch`), so `gc` can
/// tell a leaked one.
const LOGIN_LABEL: &str = "ai.login";

/// A login file is small; a bigger one is not copied out of the box.
const LOGIN_FILE_CAP: u64 = 1 << 20;

fn scratch_name(pid: u32) -> String {
    format!(".login-{pid}")
}

/// Runs the login container; returns the login command's exit code.
pub fn login_in_container(dirs: &StateDir, mode: &Mode, eff: &Effective) -> Result<i64> {
    let files = credential_files(&eff.agent);
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "no login file is known for {mode}: its instances share nothing, log in inside each one"
        )));
    }
    let policy = eff.settings.networking.egress;
    if policy != EgressPolicy::Open {
        return Err(Error::Invalid(format!(
            "networking.egress = \"{policy}\" applies to {mode}: the login container would reach \
             the login servers past it; copy this machine's login instead \
             (`ai-sessctl login {mode} --from-host`) or log in where egress is \"open\""
        )));
    }
    let engine = Engine::shared()?;
    let agent = &eff.agent;
    if agent.image.is_empty() || !engine.image_exists(&agent.image)? {
        return Err(Error::NotFound(format!(
            "image {:?} for {mode} is not built; build it with `ai-sessctl image build {mode}`",
            agent.image
        )));
    }
    let states_path = dirs.states_dir();
    dirs.ensure_sub(&states_path)?;
    let states = Tree::open(&states_path).map_err(|e| Error::io(&states_path, e))?;
    let pid = std::process::id();
    let scratch = scratch_name(pid);
    let _ = states.remove_all(OsStr::new(&scratch));
    states
        .mkdir(OsStr::new(&scratch), 0o700)
        .map_err(|e| Error::io(states_path.join(&scratch), e))?;
    let code = run_container(engine, dirs, mode, eff, &states_path.join(&scratch));
    let saved = match &code {
        Ok(0) => save_login(dirs, &states, &scratch, mode, &files),
        _ => Ok(()),
    };
    let _ = states.remove_all(OsStr::new(&scratch));
    saved?;
    code
}

/// Copies the login file(s) out of the login's scratch state into
/// `states/<mode>/`: regular files only, capped, never through a link.
fn save_login(
    dirs: &StateDir,
    states: &Tree,
    scratch: &str,
    mode: &Mode,
    files: &[&str],
) -> Result<()> {
    let at = |f: &str| format!("states/{scratch}/{f}");
    let from = states
        .sub(OsStr::new(scratch))
        .map_err(|e| Error::io(at(""), e))?;
    let to = states
        .mkdir(OsStr::new(mode.as_str()), 0o700)
        .map_err(|e| Error::io(format!("states/{mode}"), e))?;
    let mut saved = 0;
    for f in files {
        let f = OsStr::new(f);
        match from.read_file(f, LOGIN_FILE_CAP) {
            Ok(data) => {
                to.write_replace(f, &data)
                    .map_err(|e| Error::io(format!("states/{mode}/{}", f.to_string_lossy()), e))?;
                saved += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(at(&f.to_string_lossy()), e)),
        }
    }
    if saved == 0 {
        return Err(Error::Other(format!(
            "the login ended without writing {}; nothing saved",
            files.join(" or ")
        )));
    }
    // What the user answered on the way (theme, sign-in method) need not
    // be asked again in each instance.
    if let Some(a) = super::answers::from_login_state(mode, &from) {
        super::answers::save(dirs, mode, a, true)?;
    }
    Ok(())
}

fn run_container(
    engine: &Engine,
    dirs: &StateDir,
    mode: &Mode,
    eff: &Effective,
    scratch: &std::path::Path,
) -> Result<i64> {
    let agent = &eff.agent;
    let cmd = agent
        .login_command
        .clone()
        .unwrap_or_else(|| agent.command.clone());
    // No `env_passthrough`: an API key has no business in a login flow.
    let mut env: Vec<String> = vec![format!("AI_MODE={mode}")];
    for name in ["TERM", "COLORTERM", "LANG"] {
        if let Some(v) = std::env::var_os(name) {
            env.push(format!("{name}={}", v.to_string_lossy()));
        }
    }
    let home = dirs.home_label();
    let pid = std::process::id();
    let name = format!("ai-login-{mode}-{pid}");
    let mut labels = crate::engine::scratch::labels(LOGIN_LABEL, mode.as_str());
    labels.insert(MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned());
    labels.insert(HOME_LABEL.to_owned(), home);
    let spec = ContainerSpec {
        name: name.clone(),
        image: agent.image.clone(),
        cmd,
        env,
        labels,
        interactive: true,
        init: true,
        memory: Some(eff.settings.resources.memory.limit.0 as i64),
        binds: vec![Bind {
            source: scratch.to_path_buf(),
            target: agent.state_dir.clone(),
            read_only: false,
        }],
        ..ContainerSpec::default()
    };
    let keys = attach::parse_detach_keys(&eff.settings.global.detach_keys)?;
    let id = match engine.block_on(engine.create(&spec, &[]))?.0 {
        Created::Id(id) => id,
        Created::NameTaken => {
            return Err(Error::Invalid(format!(
                "a container named {name} exists already; `ai-sessctl gc` removes a leaked login container"
            )))
        }
    };
    let result = engine
        .block_on(engine.start(&id))
        .and_then(|()| engine.attach(&id, &keys, true));
    // Throwaway: gone whatever happened (detached, failed or done); a
    // killed `login` leaves it to `gc` (see `reap_logins`).
    let _ = engine.remove_container(&id);
    match result? {
        AttachEnd::Exited(code) => Ok(code),
        AttachEnd::Detached => Err(Error::Other(
            "detached: the login container was removed; run `ai-sessctl login` again to finish"
                .into(),
        )),
    }
}

/// Login containers of this state home whose `ai-sessctl login` is gone
/// (killed before it could remove them): removed, with their scratch
/// state, unless `dry_run`. Returns their names.
pub fn reap_logins(engine: &Engine, dirs: &StateDir, dry_run: bool) -> Result<Vec<String>> {
    let home = [format!("{HOME_LABEL}={}", dirs.home_label())];
    let gone = engine.reap_orphans(LOGIN_LABEL, &home, dry_run)?;
    if !dry_run {
        if let Ok(states) = Tree::open(&dirs.states_dir()) {
            for p in gone.iter().filter_map(|o| o.pid) {
                let _ = states.remove_all(OsStr::new(&scratch_name(p)));
            }
        }
    }
    Ok(gone.into_iter().map(|o| o.name).collect())
}
