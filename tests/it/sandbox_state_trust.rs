//! A state directory, `config.toml` or `configs/*.toml` that another uid
//! owns or may write is refused (as ssh refuses such keys): whoever can
//! write there can plant a config whose `command` runs as you.
//! Needs root, to hand files to a real other uid (`nobody`).

use crate::common::{stderr, Env};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn nobody() -> Option<nix::unistd::User> {
    if !nix::unistd::getuid().is_root() {
        eprintln!("\n*** SKIPPED: needs root to chown to another uid ***\n");
        return None;
    }
    nix::unistd::User::from_name("nobody").unwrap()
}

fn give_away(path: &Path, to: &nix::unistd::User) {
    nix::unistd::chown(path, Some(to.uid), Some(to.gid)).unwrap();
}

fn take_back(path: &Path) {
    nix::unistd::chown(path, Some(0.into()), Some(0.into())).unwrap();
}

/// Asserts a clear refusal naming `path`; returns stderr.
fn assert_untrusted(env: &Env, args: &[&str], path: &Path) -> String {
    let out = env.run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{args:?} refused: {err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("refusing"),
        "{args:?}: the error names the file: {err}"
    );
    err
}

#[test]
fn a_state_dir_owned_by_another_uid_is_refused_and_left_alone() {
    let Some(nobody) = nobody() else { return };
    let env = Env::new();
    let state = env.state().to_path_buf();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    give_away(&state, &nobody);
    for args in [
        &["list"][..],
        &["config", "get", "--global", "global.runtime"],
    ] {
        let err = assert_untrusted(&env, args, &state);
        assert!(err.contains("owned by"), "{err}");
    }
    let m = std::fs::metadata(&state).unwrap();
    assert_eq!(m.uid(), nobody.uid.as_raw(), "not taken over");
    assert_eq!(m.mode() & 0o777, 0o755, "not chmod'ed");
    assert!(!state.join("registry.json").exists(), "nothing written");
    take_back(&state);
    assert!(env.run(&["list"]).status.success());
}

#[test]
fn a_state_dir_writable_by_others_is_refused() {
    let env = Env::new();
    let state = env.state();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = assert_untrusted(&env, &["list"], state);
    assert!(err.contains("writable"), "{err}");
    // Readable by others only: tightened, as always.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(env.run(&["port", "alloc"]).status.success());
    assert_eq!(std::fs::metadata(state).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn config_files_owned_or_writable_by_others_are_refused() {
    let Some(nobody) = nobody() else { return };
    let env = Env::new();
    let config = env.state().join("config.toml");
    // A config planted by another uid, with a host command.
    env.write_config("[global]\nruntime = \"host\"\n[agents.claude]\ncommand = [\"/bin/true\"]\n");
    give_away(&config, &nobody);
    let err = assert_untrusted(
        &env,
        &["config", "get", "--global", "global.runtime"],
        &config,
    );
    assert!(err.contains("owned by"), "{err}");
    take_back(&config);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = assert_untrusted(
        &env,
        &["config", "get", "--global", "global.runtime"],
        &config,
    );
    assert!(err.contains("writable"), "{err}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(env
        .run(&["config", "get", "--global", "global.runtime"])
        .status
        .success());

    // An instance file, the same.
    let configs = env.state().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::set_permissions(&configs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let inst = configs.join("p-claude.toml");
    std::fs::write(&inst, "[agents.claude]\ncommand = [\"/bin/true\"]\n").unwrap();
    give_away(&inst, &nobody);
    let err = assert_untrusted(
        &env,
        &["config", "get", "p-claude", "global.runtime"],
        &inst,
    );
    assert!(err.contains("owned by"), "{err}");
    take_back(&inst);
}
