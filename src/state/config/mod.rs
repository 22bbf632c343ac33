//! Config manager: TOML layers (built-in defaults < global `config.toml` <
//! `[agents.<mode>]` overrides < `configs/<id>.toml` < flags), validated
//! per file so errors name the file, line and key.

mod edit;
mod settings;
pub mod units;

pub use edit::{edit_interactively, get_value, set_value};
pub use settings::*;

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Mode};
use std::path::Path;

/// Settings for one agent instance, with the agent's definition.
#[derive(Debug, Clone)]
pub struct Effective {
    pub settings: Settings,
    pub agent: AgentSpec,
}

/// Which file a `config` command talks about.
#[derive(Debug, Clone)]
pub enum Scope {
    Global,
    Instance(InstanceId),
}

impl Scope {
    pub fn file(&self, dirs: &StateDir) -> std::path::PathBuf {
        match self {
            Scope::Global => dirs.config(),
            Scope::Instance(id) => dirs.instance_config(id),
        }
    }
}

fn defaults_table() -> toml::Table {
    toml::Table::try_from(Settings::default()).expect("defaults serialize")
}

/// Far more than any hand-written config; a bigger file is a mistake and
/// would slow down every command (and every completion) that reads it.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of a config file, `None` when it does not exist. Refuses (and
/// names) a file that is not UTF-8 or larger than `MAX_CONFIG_BYTES`.
pub fn read_text(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    crate::core::paths::trusted(path, &meta)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::Invalid(format!(
            "{}: larger than the {} MiB limit for a config file",
            path.display(),
            MAX_CONFIG_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        Error::Invalid(format!(
            "{}: not valid UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads and checks one layer; a missing file is an empty layer.
pub fn read_layer(path: &Path) -> Result<toml::Table> {
    match read_text(path)? {
        Some(text) => check_text(path, &text),
        None => Ok(toml::Table::new()),
    }
}

/// Parses `text` as a config file and checks every key and value.
pub fn check_text(path: &Path, text: &str) -> Result<toml::Table> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| located(path, text, &e))?;
    let settings = toml::from_str::<Settings>(text).map_err(|e| located(path, text, &e))?;
    // Claude Code's spelling of `worktree.base_ref` (a serde alias) as the
    // key the layers merge under.
    if let Some(toml::Value::Table(w)) = table.get_mut("worktree") {
        if let Some(v) = w.remove("baseRef") {
            w.entry("base_ref").or_insert(v);
        }
    }
    check_money(path, &settings)?;
    check_thresholds(path, &settings)?;
    // Agent overrides are checked as if they were top-level sections.
    if let Some(toml::Value::Table(agents)) = table.get("agents") {
        for (name, spec) in agents {
            Mode::parse(name).map_err(|_| {
                Error::Invalid(format!(
                    "{}: [agents.{name}]: agent names are letters only",
                    path.display()
                ))
            })?;
            if let Some(t) = spec.as_table() {
                for env in t
                    .get("env_passthrough")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    let ok = env.as_str().is_some_and(valid_env_name);
                    if !ok {
                        return Err(Error::Invalid(format!(
                            "{}: agents.{name}.env_passthrough: {env} is not a variable name",
                            path.display()
                        )));
                    }
                }
                let overrides = agent_overrides(t);
                toml::Value::Table(overrides)
                    .try_into::<Settings>()
                    .map_err(|e| {
                        Error::Invalid(format!(
                            "{}: [agents.{name}] override: {}",
                            path.display(),
                            e.message()
                        ))
                    })?;
            }
        }
    }
    Ok(table)
}

/// A resource threshold above its limit can never fire; percentages are
/// of the limit.
fn check_thresholds(path: &Path, s: &Settings) -> Result<()> {
    let bad =
        |key: &str, why: String| Err(Error::Invalid(format!("{}: {key}: {why}", path.display())));
    let (cpu, mem) = (&s.resources.cpu, &s.resources.memory);
    for (key, t, pct) in [
        ("warning_threshold", cpu.warning_threshold, "cpu_percent"),
        (
            "critical_threshold",
            cpu.critical_threshold,
            "cpu_critical_percent",
        ),
    ] {
        if let Some(t) = t.filter(|t| t.0 > cpu.limit.0) {
            return bad(
                &format!("resources.cpu.{key}"),
                format!(
                    "{t} is above the limit ({}) and could never fire; lower it, or remove it to use alerts.{pct} (of the limit)",
                    cpu.limit
                ),
            );
        }
    }
    for (key, t, pct) in [
        ("warning_threshold", mem.warning_threshold, "memory_percent"),
        (
            "critical_threshold",
            mem.critical_threshold,
            "memory_critical_percent",
        ),
    ] {
        if let Some(t) = t.filter(|t| t.0 > mem.limit.0) {
            return bad(
                &format!("resources.memory.{key}"),
                format!(
                    "{t} is above the limit ({}) and could never fire; lower it, or remove it to use alerts.{pct} (of the limit)",
                    mem.limit
                ),
            );
        }
    }
    for (key, v) in [
        ("cpu_percent", s.alerts.cpu_percent),
        ("memory_percent", s.alerts.memory_percent),
        ("cpu_critical_percent", s.alerts.cpu_critical_percent),
        ("memory_critical_percent", s.alerts.memory_critical_percent),
    ] {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return bad(
                &format!("alerts.{key}"),
                "a percentage of the limit, 0 (none) to 100".into(),
            );
        }
    }
    Ok(())
}

/// Budgets are positive, prices not negative, upstreams `http(s)://` URLs.
fn check_money(path: &Path, s: &Settings) -> Result<()> {
    let bad =
        |key: &str, why: &str| Err(Error::Invalid(format!("{}: {key}: {why}", path.display())));
    for (key, v) in [
        ("budget.instance_usd", s.budget.instance_usd),
        ("budget.daily_usd", s.budget.daily_usd),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return bad(key, "a budget is a positive number of US dollars");
        }
    }
    for (model, p) in &s.prices {
        let all = [
            Some(p.input_per_mtok),
            Some(p.output_per_mtok),
            p.cache_write_per_mtok,
            p.cache_read_per_mtok,
        ];
        if all
            .into_iter()
            .flatten()
            .any(|v| !(v.is_finite() && v >= 0.0))
        {
            return bad(
                &format!("prices.\"{model}\""),
                "a price is a number of US dollars per million tokens, 0 or more",
            );
        }
    }
    for (name, agent) in &s.agents {
        if let Some(up) = &agent.credentials.upstream {
            if let Err(why) = crate::core::types::check_upstream(up) {
                return bad(&format!("agents.{name}.credentials.upstream"), &why);
            }
        }
        if let Some(url) = &agent.credentials.token_url {
            if let Err(why) = crate::core::types::check_upstream(url) {
                return bad(&format!("agents.{name}.credentials.token_url"), &why);
            }
        }
    }
    Ok(())
}

pub fn valid_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 256
}

fn agent_overrides(agent: &toml::Table) -> toml::Table {
    ["resources", "health", "networking"]
        .iter()
        .filter_map(|k| agent.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// Turns a TOML error into `file:line: key = …: message`.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    located_at(path, text, e.message(), e.span())
}

/// `file:line: message (in `line text`)` for an error at byte `span`.
pub(crate) fn located_at(
    path: &Path,
    text: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> Error {
    let msg = message.trim().replace('\n', " ");
    match span {
        Some(span) => {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            Error::Invalid(format!(
                "{}:{line_no}: {msg} (in `{}`)",
                path.display(),
                crate::core::types::truncate_for_message(line)
            ))
        }
        None => Error::Invalid(format!("{}: {msg}", path.display())),
    }
}

pub fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn into_settings(table: toml::Table) -> Result<Settings> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::Invalid(format!("config: {}", e.message())))
}

/// Defaults merged with the global file.
pub fn load_global(dirs: &StateDir) -> Result<Settings> {
    let mut t = defaults_table();
    deep_merge(&mut t, read_layer(&dirs.config())?);
    into_settings(t)
}

/// `networking.allow` and `networking.deny` of every layer, added up (a
/// per-instance `allow` adds to the global one instead of replacing it).
#[derive(Default)]
struct AdditiveLists {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl AdditiveLists {
    fn add(&mut self, layer: &toml::Table) {
        let net = layer.get("networking").and_then(|n| n.as_table());
        for (key, into) in [("allow", &mut self.allow), ("deny", &mut self.deny)] {
            let items = net.and_then(|n| n.get(key)).and_then(|v| v.as_array());
            for s in items.into_iter().flatten().filter_map(|v| v.as_str()) {
                if !into.iter().any(|x| x == s) {
                    into.push(s.to_owned());
                }
            }
        }
    }
}

/// Every layer for one agent, and (when known) one instance.
pub fn load_for(dirs: &StateDir, mode: &Mode, id: Option<&InstanceId>) -> Result<Effective> {
    let mut t = defaults_table();
    let global_layer = read_layer(&dirs.config())?;
    deep_merge(&mut t, global_layer.clone());
    let agent_table = t
        .get("agents")
        .and_then(|a| a.get(mode.as_str()))
        .and_then(|a| a.as_table())
        .cloned();
    let Some(agent_table) = agent_table else {
        let known = t.get("agents").and_then(|a| a.as_table());
        let names = known.into_iter().flat_map(|a| a.keys().map(String::as_str));
        if let Some(near) = crate::core::error::closest(mode.as_str(), names) {
            return Err(Error::NotFound(format!(
                "unknown agent \"{mode}\"; did you mean {near}?"
            )));
        }
        return Err(Error::NotFound(format!(
            "unknown agent \"{mode}\": define it in {} as [agents.{mode}] with command = [\"{mode}\"]",
            dirs.config().display()
        )));
    };
    let mut lists = AdditiveLists::default();
    lists.add(&global_layer);
    let overrides = agent_overrides(&agent_table);
    lists.add(&overrides);
    deep_merge(&mut t, overrides);
    if let Some(id) = id {
        let layer = read_layer(&dirs.instance_config(id))?;
        lists.add(&layer);
        deep_merge(&mut t, layer);
    }
    let mut settings = into_settings(t)?;
    settings.networking.allow = lists.allow;
    settings.networking.deny = lists.deny;
    let agent = settings
        .agents
        .get(mode.as_str())
        .cloned()
        .unwrap_or_default();
    if agent.command.is_empty() {
        return Err(Error::Invalid(format!(
            "agents.{mode}.command is empty in {}",
            dirs.config().display()
        )));
    }
    Ok(Effective { settings, agent })
}

/// The configured agent names, for shell functions and completion.
/// Every settable key as a dotted name (for completion): the defaults'
/// keys plus those of the configured agents and of the files.
pub fn known_keys(dirs: &StateDir) -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => walk(&key, sub, out),
                _ => out.push(key),
            }
        }
    }
    let mut t = defaults_table();
    if let Ok(layer) = read_layer(&dirs.config()) {
        deep_merge(&mut t, layer);
    }
    let mut out = Vec::new();
    walk("", &t, &mut out);
    out.sort();
    out.dedup();
    out
}

pub fn agent_names(dirs: &StateDir) -> Result<Vec<Mode>> {
    Ok(load_global(dirs)?
        .agents
        .keys()
        .filter_map(|k| Mode::parse(k).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, StateDir) {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(t.path().to_path_buf());
        (t, d)
    }

    #[test]
    fn layers_apply_in_order() {
        let (_t, d) = dirs();
        std::fs::write(
            d.config(),
            "[resources.memory]\nlimit = \"2Gi\"\n[agents.claude.resources.cpu]\nlimit = \"1\"\n[agents.codex]\ncommand = [\"codex\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.configs_dir()).unwrap();
        let id = InstanceId::parse("p-claude").unwrap();
        std::fs::write(
            d.instance_config(&id),
            "[resources.cpu]\nlimit = \"250m\"\n",
        )
        .unwrap();
        let claude = Mode::parse("claude").unwrap();
        let g = load_for(&d, &claude, None).unwrap();
        assert_eq!(g.settings.resources.memory.limit.0, 2 << 30);
        assert_eq!(g.settings.resources.cpu.limit.0, 1000, "agent override");
        let i = load_for(&d, &claude, Some(&id)).unwrap();
        assert_eq!(i.settings.resources.cpu.limit.0, 250, "instance wins");
        let gem = load_for(&d, &Mode::parse("gemini").unwrap(), None).unwrap();
        assert_eq!(gem.settings.resources.cpu.limit.0, 500, "default");
        assert_eq!(gem.agent.env_passthrough[0], "GEMINI_API_KEY");
        let codex = load_for(&d, &Mode::parse("codex").unwrap(), None).unwrap();
        assert_eq!(codex.agent.command, ["codex"]);
        assert!(load_for(&d, &Mode::parse("nope").unwrap(), None).is_err());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let (_t, d) = dirs();
        std::fs::write(
            d.config(),
            "[global]\nauto_cleanup = true\nmax_instances = \"many\"\n",
        )
        .unwrap();
        let e = load_global(&d).unwrap_err().to_string();
        assert!(e.contains("config.toml:3:"), "{e}");
        assert!(e.contains("max_instances"), "{e}");
        std::fs::write(d.config(), "[resources.memory]\nlimit = \"1Xi\"\n").unwrap();
        let e = load_global(&d).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("1Xi"), "{e}");
        std::fs::write(d.config(), "[global\n").unwrap();
        let e = load_global(&d).unwrap_err().to_string();
        assert!(e.contains("config.toml:1"), "{e}");
        std::fs::write(d.config(), "[networking]\nport_range = [9000, 80]\n").unwrap();
        assert!(load_global(&d).is_err());
        std::fs::write(d.config(), "[globl]\nx = 1\n").unwrap();
        assert!(load_global(&d).unwrap_err().to_string().contains("globl"));
        std::fs::write(
            d.config(),
            "[agents.claude]\nenv_passthrough = [\"A;rm\"]\n",
        )
        .unwrap();
        assert!(load_global(&d).is_err());
    }

    #[test]
    fn a_threshold_above_its_limit_is_refused_and_defaults_follow_the_limit() {
        let (_t, d) = dirs();
        std::fs::write(
            d.config(),
            "[resources.memory]\nlimit = \"512Mi\"\ncritical_threshold = \"950Mi\"\n",
        )
        .unwrap();
        let e = load_global(&d).unwrap_err().to_string();
        assert!(
            e.contains("resources.memory.critical_threshold") && e.contains("above the limit"),
            "{e}"
        );
        assert!(e.contains("alerts.memory_critical_percent"), "{e}");
        // A lower limit alone: its thresholds come down with it.
        std::fs::write(d.config(), "[resources.memory]\nlimit = \"512Mi\"\n").unwrap();
        let s = load_global(&d).unwrap();
        assert_eq!(s.resources.memory.critical_threshold, None);
        std::fs::write(d.config(), "[alerts]\ncpu_percent = 150\n").unwrap();
        assert!(load_global(&d).is_err());
    }
}
