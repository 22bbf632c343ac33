//! Shell integration templates (kept as real files in `shell/` so they can
//! be shellchecked and read) and their rendering for `init`.

use crate::cli::ShellKind;

pub const ZSH: &str = include_str!("../shell/ai-sessions.zsh");
pub const BASH: &str = include_str!("../shell/ai-sessions.bash");

/// Fills the template's placeholders: the binary's absolute path (quoted
/// for the shell) and the agent names (letters only, so safe as words).
pub fn render(kind: ShellKind, bin: &str, agents: &[crate::types::Mode]) -> String {
    let template = match kind {
        ShellKind::Zsh => ZSH,
        ShellKind::Bash => BASH,
    };
    let names: Vec<&str> = agents.iter().map(|m| m.as_str()).collect();
    template
        .replace("@AI_SESSCTL@", &shell_words::quote(bin))
        .replace("@AI_AGENTS@", &names.join(" "))
}

/// `agents.list`: the configured agent names on one line, so the prompt
/// hook can notice a new agent with builtins only and define its function.
pub fn agents_file(dirs: &crate::paths::StateDir) -> std::path::PathBuf {
    dirs.root().join("agents.list")
}

/// Rewrites `agents.list` when the agents differ from what it holds.
pub fn write_agents(
    dirs: &crate::paths::StateDir,
    agents: &[crate::types::Mode],
) -> crate::error::Result<()> {
    let names: Vec<&str> = agents.iter().map(|m| m.as_str()).collect();
    let text = format!("{}\n", names.join(" "));
    let path = agents_file(dirs);
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    dirs.ensure()?;
    crate::registry::atomic_write(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Mode;

    #[test]
    fn placeholders_are_filled_and_quoted() {
        let agents = [
            Mode::parse("claude").unwrap(),
            Mode::parse("codex").unwrap(),
        ];
        let out = render(ShellKind::Bash, "/opt/my dir/ai-sessctl", &agents);
        assert!(!out.contains("@AI_"));
        assert!(out.contains("'/opt/my dir/ai-sessctl'"));
        assert!(out.contains("claude codex"));
        let out = render(ShellKind::Zsh, "/usr/bin/ai-sessctl", &agents);
        assert!(!out.contains("@AI_"));
    }
}
