//! install.sh as a new user runs it: binary, `ai-session` link, completions
//! and one init line per rc file; idempotent; `--uninstall` leaves the rc
//! files byte-identical and the state dir alone. The build step is replaced
//! by `--binary` with the test binary (a release build would take minutes).

use crate::common;

use std::path::Path;
use std::process::Command;

fn install(home: &Path, prefix: &Path, extra: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    Command::new("bash")
        .arg(script)
        .args(["--prefix"])
        .arg(prefix)
        .args(["--binary", common::BIN])
        .args(extra)
        .env("HOME", home)
        .env_remove("AI_SESSIONS_HOME")
        .env_remove("PREFIX")
        .output()
        .unwrap()
}

#[test]
fn install_is_idempotent_works_in_a_new_shell_and_uninstalls_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let prefix = t.path().join("pre fix");
    std::fs::create_dir_all(&home).unwrap();
    let zshrc = "# my zshrc\nexport FOO=1\n";
    let bashrc = "# my bashrc\nalias ll='ls -l'";
    std::fs::write(home.join(".zshrc"), zshrc).unwrap();
    std::fs::write(home.join(".bashrc"), bashrc).unwrap();

    let out = install(&home, &prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = prefix.join("bin/ai-sessctl");
    assert!(bin.is_file());
    assert_eq!(
        std::fs::read_link(prefix.join("bin/ai-session")).unwrap(),
        Path::new("ai-sessctl")
    );
    assert!(prefix
        .join("share/zsh/site-functions/_ai-sessctl")
        .is_file());
    assert!(prefix
        .join("share/bash-completion/completions/ai-sessctl")
        .is_file());
    let once = std::fs::read_to_string(home.join(".bashrc")).unwrap();
    assert_eq!(once.matches("# >>> ai-sessions >>>").count(), 1, "{once}");
    assert!(once.contains("init bash"));
    assert!(std::fs::read_to_string(home.join(".zshrc"))
        .unwrap()
        .contains("init zsh"));

    // Twice changes nothing.
    let out = install(&home, &prefix, &[]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(home.join(".bashrc")).unwrap(), once);

    // A new interactive shell gets the functions, quietly.
    let state = t.path().join("state");
    let out = Command::new("bash")
        .args(["-i", "-c", "type -t claude; type -t ai-list; echo done"])
        .env("HOME", &home)
        .env("AI_SESSIONS_HOME", &state)
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "function\nfunction\ndone\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::create_dir_all(&state).unwrap();
    let out = install(&home, &prefix, &["--uninstall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bin.exists());
    assert!(!prefix.join("bin/ai-session").exists());
    assert_eq!(std::fs::read_to_string(home.join(".zshrc")).unwrap(), zshrc);
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        bashrc
    );
}

#[test]
fn no_modify_rc_leaves_rc_files_alone() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), "x=1\n").unwrap();
    let out = install(&home, &t.path().join("p"), &["--no-modify-rc"]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "x=1\n"
    );
    assert!(t.path().join("p/bin/ai-sessctl").is_file());
}
