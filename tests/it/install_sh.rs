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

/// An interactive `shell` (zsh or bash) of the installed integration that
/// runs `--uninstall` and then types `claude`, as a shell opened before the
/// uninstall would: what it prints (both streams).
fn uninstall_from_an_open_shell(shell: &str, home: &Path, prefix: &Path, state: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = Command::new(shell)
        .args([
            "-i",
            "-c",
            "bash \"$AIS_SCRIPT\" --prefix \"$AIS_PREFIX\" --uninstall; claude; echo \"rc=$?\"",
        ])
        .env("HOME", home)
        .env("AI_SESSIONS_HOME", state)
        .env("AIS_SCRIPT", &script)
        .env("AIS_PREFIX", prefix)
        .env("PATH", std::env::var("PATH").unwrap())
        .env_remove("PREFIX")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--uninstall` stops the `serve` of the installed binary, removes zsh's
/// completion cache when install's `compinit` made it (only then) and the
/// completion directories it emptied; a shell opened before says the tool
/// was uninstalled instead of "No such file or directory".
#[test]
fn uninstall_stops_serve_removes_what_install_made_and_open_shells_say_so() {
    use std::io::BufRead;
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let prefix = t.path().join("prefix");
    let state = t.path().join("state");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(home.join(".zshrc"), "# mine\n").unwrap();
    std::fs::write(home.join(".bashrc"), "# mine\n").unwrap();
    let out = install(&home, &prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A new zsh: the block's compinit writes the completion cache.
    let out = Command::new("zsh")
        .args(["-i", "-c", "exit"])
        .env("HOME", &home)
        .env("AI_SESSIONS_HOME", &state)
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = home.join(".zcompdump");
    assert!(dump.exists(), "zsh's compinit made {}", dump.display());

    // The dashboard server, from the installed binary.
    let mut serve = Command::new(prefix.join("bin/ai-sessctl"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("AI_SESSIONS_HOME", &state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kept open to the end: serve ends quietly when its stdout closes.
    let mut said_by_serve = std::io::BufReader::new(serve.stdout.take().unwrap());
    let mut first = String::new();
    said_by_serve.read_line(&mut first).unwrap();
    assert!(first.contains("http://127.0.0.1:"), "{first}");

    let said = uninstall_from_an_open_shell("zsh", &home, &prefix, &state);
    assert!(
        said.contains(&format!("stopped ai-sessctl serve (pid {})", serve.id())),
        "{said}"
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(30), || serve
            .try_wait()
            .unwrap()
            .is_some()),
        "serve still runs after the uninstall: {said}"
    );
    assert!(
        said.contains("ai-sessions was uninstalled") && said.contains("open a new shell"),
        "{said}"
    );
    assert!(said.contains("rc=127"), "{said}");
    assert!(!said.contains("No such file or directory"), "{said}");
    assert!(!said.contains("no such file or directory"), "{said}");
    assert!(!dump.exists(), "{said}");
    assert!(!prefix.join("share/zsh").exists(), "{said}");
    assert!(!prefix.join("share/bash-completion").exists(), "{said}");
    assert!(!prefix.join("share/fish").exists(), "{said}");
    assert!(prefix.join("share").is_dir(), "PREFIX/share stays: {said}");
    assert_eq!(
        std::fs::read_to_string(home.join(".zshrc")).unwrap(),
        "# mine\n"
    );

    // A cache the user had before install is theirs: kept. A completion
    // directory holding something else stays. The same in bash.
    std::fs::write(&dump, "#users\n").unwrap();
    let theirs = prefix.join("share/bash-completion/completions/git");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, "").unwrap();
    let out = install(&home, &prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = uninstall_from_an_open_shell("bash", &home, &prefix, &state);
    assert!(said.contains("ai-sessions was uninstalled"), "{said}");
    assert!(!said.contains("No such file or directory"), "{said}");
    assert_eq!(std::fs::read_to_string(&dump).unwrap(), "#users\n");
    assert!(theirs.is_file());
    assert!(!prefix.join("share/zsh").exists(), "{said}");
    drop(said_by_serve);
}
