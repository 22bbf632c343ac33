//! An agent's answers to its first-run questions, so that a first start in
//! a box opens at the prompt: Claude Code's onboarding (done, theme, the
//! bypass-mode disclaimer) and Gemini CLI's sign-in method and theme, plus
//! the folders the user trusts. Taken from this machine's agent (`login
//! --from-host`) or from the login container, these named keys alone are
//! kept (`states/.answers/<mode>.json`: never a secret, a history or any
//! other setting), and at each start written into the instance's own state
//! where it has no answer of its own; a folder's trust only reaches the
//! instances of that folder (or of one below it).

use crate::core::error::{Error, Result};
use crate::core::paths::{ensure_private_dir, StateDir};
use crate::core::types::Mode;
use crate::core::untrusted::tree::Tree;
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// An agent config file bigger than this is not read (Claude Code's
/// `.claude.json` once held whole histories).
const CONFIG_CAP: u64 = 32 << 20;

/// Where an agent keeps its answers, and which of them are carried.
struct Shape {
    /// The file in the agent's state dir that holds its settings.
    settings_file: &'static str,
    /// The settings carried: a path of keys, and whether its value is a
    /// bool (else a string).
    keys: &'static [(&'static [&'static str], Kind)],
    /// The one of `keys` that picks how the agent signs in: left out where
    /// the start gives the agent a key instead (an agent's own settings
    /// win over the defaults that select the key).
    sign_in: Option<&'static [&'static str]>,
    trust: TrustShape,
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Str,
}

enum TrustShape {
    /// Claude Code: `projects.<folder>.hasTrustDialogAccepted` in the
    /// settings file.
    Projects,
    /// Gemini CLI: `<folder>: "TRUST_FOLDER" | "TRUST_PARENT"` in a file
    /// of its own.
    File(&'static str),
}

const CLAUDE: Shape = Shape {
    settings_file: ".claude.json",
    keys: &[
        (&["hasCompletedOnboarding"], Kind::Bool),
        (&["lastOnboardingVersion"], Kind::Str),
        (&["theme"], Kind::Str),
        (&["bypassPermissionsModeAccepted"], Kind::Bool),
    ],
    sign_in: None,
    trust: TrustShape::Projects,
};

const GEMINI: Shape = Shape {
    settings_file: "settings.json",
    keys: &[
        (&["security", "auth", "selectedType"], Kind::Str),
        (&["ui", "theme"], Kind::Str),
    ],
    sign_in: Some(&["security", "auth", "selectedType"]),
    trust: TrustShape::File("trustedFolders.json"),
};

fn shape(mode: &Mode) -> Option<&'static Shape> {
    match mode.as_str() {
        "claude" => Some(&CLAUDE),
        "gemini" => Some(&GEMINI),
        _ => None,
    }
}

/// The answers kept for one agent: the carried settings (nested as in the
/// agent's file) and the trusted folders with the agent's word for it.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answers {
    #[serde(default)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    pub trusted: Map<String, Value>,
}

impl Answers {
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty() && self.trusted.is_empty()
    }

    /// What was carried, for the user: "onboarding done, theme, 2 trusted
    /// folders".
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut leaves = Vec::new();
        collect_leaves(&self.settings, &mut Vec::new(), &mut leaves);
        parts.extend(leaves);
        match self.trusted.len() {
            0 => {}
            1 => parts.push("1 trusted folder".into()),
            n => parts.push(format!("{n} trusted folders")),
        }
        parts.join(", ")
    }
}

fn collect_leaves(m: &Map<String, Value>, at: &mut Vec<String>, out: &mut Vec<String>) {
    for (k, v) in m {
        at.push(k.clone());
        match v {
            Value::Object(sub) => collect_leaves(sub, at, out),
            _ => out.push(at.join(".")),
        }
        at.pop();
    }
}

/// The carried keys of an agent's settings, and its trusted folders, from
/// its files (`trust` is None where trust is not to be taken).
fn pick(shape: &Shape, settings: Option<&Value>, trust_file: Option<&Value>) -> Answers {
    let mut a = Answers::default();
    if let Some(s) = settings {
        for (path, kind) in shape.keys {
            let v = path.iter().try_fold(s, |v, k| v.get(*k));
            let ok = match (kind, v) {
                (Kind::Bool, Some(Value::Bool(_))) => true,
                (Kind::Str, Some(Value::String(s))) => s.len() <= 256,
                _ => false,
            };
            if let (true, Some(v)) = (ok, v) {
                set_path(&mut a.settings, path, v.clone());
            }
        }
    }
    match shape.trust {
        TrustShape::Projects => {
            let projects = settings.and_then(|s| s.get("projects")?.as_object());
            for (folder, p) in projects.into_iter().flatten() {
                if p.get("hasTrustDialogAccepted") == Some(&Value::Bool(true)) && is_folder(folder)
                {
                    a.trusted.insert(folder.clone(), Value::Bool(true));
                }
            }
        }
        TrustShape::File(_) => {
            for (folder, how) in trust_file.and_then(Value::as_object).into_iter().flatten() {
                if matches!(how.as_str(), Some("TRUST_FOLDER" | "TRUST_PARENT"))
                    && is_folder(folder)
                {
                    a.trusted.insert(folder.clone(), how.clone());
                }
            }
        }
    }
    a
}

/// An absolute path with nothing odd in it (it becomes a key in a box).
fn is_folder(p: &str) -> bool {
    p.starts_with('/') && p.len() <= 4096 && !p.chars().any(char::is_control)
}

fn set_path(m: &mut Map<String, Value>, path: &[&str], v: Value) {
    let Some((last, above)) = path.split_last() else {
        return;
    };
    let mut at = m;
    for k in above {
        let next = at
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(o) = next else { return };
        at = o;
    }
    at.insert(last.to_string(), v);
}

fn remove_path(m: &mut Map<String, Value>, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            m.remove(*last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(sub)) = m.get_mut(*first) {
                remove_path(sub, rest);
                if sub.is_empty() {
                    m.remove(*first);
                }
            }
        }
    }
}

fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
}

/// The answers of this machine's agent, read from its files under `home`
/// (Claude Code: `~/.claude.json`, or `.claude.json` in
/// `$CLAUDE_CONFIG_DIR`; Gemini CLI: `~/.gemini/settings.json` and
/// `trustedFolders.json`). None for an agent not known here, or when its
/// files hold none.
pub fn from_host(mode: &Mode, home: &Path, claude_dir: Option<&Path>) -> Option<Answers> {
    let shape = shape(mode)?;
    let read = |p: PathBuf| -> Option<Value> {
        let f = std::fs::File::open(p).ok()?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, CONFIG_CAP + 1), &mut buf).ok()?;
        (buf.len() as u64 <= CONFIG_CAP)
            .then(|| parse(&buf))
            .flatten()
    };
    let dir = match mode.as_str() {
        "claude" => claude_dir.map_or_else(|| home.to_path_buf(), Path::to_path_buf),
        _ => home.join(".gemini"),
    };
    let settings = read(dir.join(shape.settings_file));
    let trust = match shape.trust {
        TrustShape::File(f) => read(dir.join(f)),
        TrustShape::Projects => None,
    };
    Some(pick(shape, settings.as_ref(), trust.as_ref())).filter(|a| !a.is_empty())
}

/// The settings answered in a login container's state (`scratch`, written
/// by the box: read through `Tree`); its folder trust is about the
/// container's own folder, and is not taken.
pub fn from_login_state(mode: &Mode, scratch: &Tree) -> Option<Answers> {
    let shape = shape(mode)?;
    let settings = scratch
        .read_file(OsStr::new(shape.settings_file), CONFIG_CAP)
        .ok()
        .and_then(|b| parse(&b));
    let mut a = pick(shape, settings.as_ref(), None);
    a.trusted.clear();
    Some(a).filter(|a| !a.is_empty())
}

fn answers_path(dirs: &StateDir, mode: &Mode) -> PathBuf {
    dirs.states_dir()
        .join(".answers")
        .join(format!("{mode}.json"))
}

/// Keeps `new` as the agent's answers (0600). `keep_trust`: the folders
/// already kept stay (a login container answers no trust of its own).
pub fn save(dirs: &StateDir, mode: &Mode, mut new: Answers, keep_trust: bool) -> Result<()> {
    if keep_trust {
        if let Some(old) = load(dirs, mode) {
            new.trusted = old.trusted;
        }
    }
    let path = answers_path(dirs, mode);
    dirs.ensure_sub(&dirs.states_dir())?;
    if let Some(parent) = path.parent() {
        ensure_private_dir(parent)?;
    }
    let bytes = serde_json::to_vec_pretty(&new).map_err(|e| Error::Other(e.to_string()))?;
    crate::core::paths::atomic_write(&path, &bytes)
}

/// The agent's kept answers, if any (a file that does not parse is none).
pub fn load(dirs: &StateDir, mode: &Mode) -> Option<Answers> {
    let bytes = std::fs::read(answers_path(dirs, mode)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `folder`, trusted as `how`, covers `project`.
fn covers(folder: &str, how: &Value, project: &Path) -> bool {
    let folder = Path::new(folder);
    let base = match how.as_str() {
        Some("TRUST_PARENT") => folder.parent().unwrap_or(folder),
        _ => folder,
    };
    project.starts_with(base)
}

/// Writes the agent's kept answers into an instance's own state (`state`,
/// which the box writes: every access through `Tree`): each carried key the
/// instance's file does not have, and the trust of the folders that cover
/// `project`; the sign-in method unless `keyed` (the start gives the agent
/// a key). A file of the instance that is not a JSON object is left as it
/// is. Returns whether anything was written.
pub fn apply(
    dirs: &StateDir,
    mode: &Mode,
    state: &Path,
    project: &Path,
    keyed: bool,
) -> Result<bool> {
    let (Some(shape), Some(mut answers)) = (shape(mode), load(dirs, mode)) else {
        return Ok(false);
    };
    if let (true, Some(path)) = (keyed, shape.sign_in) {
        remove_path(&mut answers.settings, path);
    }
    let tree = Tree::open(state).map_err(|e| Error::io(state, e))?;
    let trusted: Map<String, Value> = answers
        .trusted
        .iter()
        .filter(|(f, how)| covers(f, how, project))
        .map(|(f, how)| (f.clone(), how.clone()))
        .collect();
    let mut wrote = false;
    let update = |file: &str, f: &dyn Fn(&mut Map<String, Value>) -> bool| -> Result<bool> {
        let name = OsStr::new(file);
        let mut doc = match tree.read_file(name, CONFIG_CAP) {
            Ok(b) => match parse(&b) {
                Some(Value::Object(m)) => m,
                _ => return Ok(false),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            // A link, a FIFO, too big: the instance's own, left alone.
            Err(_) => return Ok(false),
        };
        if !f(&mut doc) {
            return Ok(false);
        }
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))
            .map_err(|e| Error::Other(e.to_string()))?;
        bytes.push(b'\n');
        tree.write_replace(name, &bytes)
            .map_err(|e| Error::io(state.join(file), e))?;
        Ok(true)
    };
    let fill_settings = |doc: &mut Map<String, Value>| fill_missing(doc, &answers.settings);
    match shape.trust {
        TrustShape::Projects => {
            wrote |= update(shape.settings_file, &|doc| {
                let mut changed = fill_settings(doc);
                for folder in trusted.keys() {
                    let projects = doc
                        .entry("projects")
                        .or_insert_with(|| Value::Object(Map::new()));
                    let Some(projects) = projects.as_object_mut() else {
                        break;
                    };
                    let p = projects
                        .entry(folder.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(p) = p.as_object_mut() {
                        if !p.contains_key("hasTrustDialogAccepted") {
                            p.insert("hasTrustDialogAccepted".into(), Value::Bool(true));
                            changed = true;
                        }
                    }
                }
                changed
            })?;
        }
        TrustShape::File(trust_file) => {
            wrote |= update(shape.settings_file, &fill_settings)?;
            if !trusted.is_empty() {
                wrote |= update(trust_file, &|doc| {
                    let mut changed = false;
                    for (folder, how) in &trusted {
                        if !doc.contains_key(folder) {
                            doc.insert(folder.clone(), how.clone());
                            changed = true;
                        }
                    }
                    changed
                })?;
            }
        }
    }
    Ok(wrote)
}

/// Copies into `doc` each leaf of `answers` it does not have (an answer the
/// instance gave itself wins); whether anything changed.
fn fill_missing(doc: &mut Map<String, Value>, answers: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, v) in answers {
        match (doc.get_mut(k), v) {
            (None, _) => {
                doc.insert(k.clone(), v.clone());
                changed = true;
            }
            (Some(Value::Object(d)), Value::Object(a)) => changed |= fill_missing(d, a),
            _ => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_named_answers_are_picked() {
        let host = json!({
            "hasCompletedOnboarding": true, "theme": "light", "lastOnboardingVersion": "2.0.0",
            "bypassPermissionsModeAccepted": "yes",
            "primaryApiKey": "sk-ant-api03-SECRET", "userID": "u", "mcpServers": {"x": {}},
            "oauthAccount": {"emailAddress": "a@b"},
            "projects": {"/p": {"hasTrustDialogAccepted": true, "history": ["SECRET"]},
                         "/q": {"hasTrustDialogAccepted": false}, "rel": {"hasTrustDialogAccepted": true}}
        });
        let a = pick(&CLAUDE, Some(&host), None);
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("SECRET") && !text.contains("a@b"), "{text}");
        assert_eq!(
            a.settings,
            json!({"hasCompletedOnboarding": true, "theme": "light", "lastOnboardingVersion": "2.0.0"})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!(a.trusted.keys().collect::<Vec<_>>(), ["/p"]);
        let g = pick(
            &GEMINI,
            Some(
                &json!({"security": {"auth": {"selectedType": "oauth-personal", "apiKey": "SECRET"}},
                         "ui": {"theme": "GitHub", "other": 1}, "mcpServers": {}}),
            ),
            Some(&json!({"/p": "TRUST_FOLDER", "/q": "DO_NOT_TRUST", "/r": "TRUST_PARENT"})),
        );
        assert_eq!(
            Value::Object(g.settings.clone()),
            json!({"security": {"auth": {"selectedType": "oauth-personal"}}, "ui": {"theme": "GitHub"}})
        );
        assert_eq!(g.trusted.keys().collect::<Vec<_>>(), ["/p", "/r"]);
        assert_eq!(
            g.summary(),
            "security.auth.selectedType, ui.theme, 2 trusted folders"
        );
    }

    #[test]
    fn an_instance_gets_what_it_lacks_and_the_trust_of_its_folder_only() {
        let t = tempfile::tempdir().unwrap();
        let dirs = StateDir::new(t.path().to_path_buf());
        let mode = Mode::parse("claude").unwrap();
        let a = Answers {
            settings: json!({"hasCompletedOnboarding": true, "theme": "light"})
                .as_object()
                .cloned()
                .unwrap(),
            trusted: json!({"/src": true, "/src/app": true, "/other": true})
                .as_object()
                .cloned()
                .unwrap(),
        };
        save(&dirs, &mode, a, false).unwrap();
        let st = t.path().join("st");
        std::fs::create_dir(&st).unwrap();
        std::fs::write(
            st.join(".claude.json"),
            r#"{"theme":"dark","numStartups":3}"#,
        )
        .unwrap();
        assert!(apply(&dirs, &mode, &st, Path::new("/src/app"), false).unwrap());
        let v: Value =
            serde_json::from_slice(&std::fs::read(st.join(".claude.json")).unwrap()).unwrap();
        assert_eq!(v["theme"], "dark", "the instance's own answer wins");
        assert_eq!(v["numStartups"], 3);
        assert_eq!(v["hasCompletedOnboarding"], true);
        let projects: Vec<&String> = v["projects"].as_object().unwrap().keys().collect();
        assert_eq!(projects, ["/src", "/src/app"]);
        assert!(
            !apply(&dirs, &mode, &st, Path::new("/src/app"), false).unwrap(),
            "nothing new"
        );
        // A link planted by the box is not followed.
        let st2 = t.path().join("st2");
        std::fs::create_dir(&st2).unwrap();
        std::os::unix::fs::symlink(t.path().join("victim"), st2.join(".claude.json")).unwrap();
        assert!(!apply(&dirs, &mode, &st2, Path::new("/src"), false).unwrap());
        assert!(!t.path().join("victim").exists());
    }
}
