//! `config get|set|--edit`: dotted keys, comments kept (`toml_edit`), and
//! nothing written unless the whole result is valid.

use super::{check_text, Scope};
use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use std::path::Path;

const TEMPLATE: &str = include_str!("template.toml");

fn split_key(key: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(Error::Usage(format!(
            "invalid key {:?}: use dotted names like resources.memory.limit",
            crate::core::types::truncate_for_message(key)
        )));
    }
    Ok(parts)
}

/// The effective value of `key` in a scope, as TOML text (strings bare).
pub fn get_value(settings: &super::Settings, key: &str) -> Result<String> {
    let mut v =
        toml::Value::try_from(settings).map_err(|e| Error::Other(format!("config: {e}")))?;
    for part in split_key(key)? {
        v = match v {
            toml::Value::Table(mut t) => t.remove(part),
            _ => None,
        }
        .ok_or_else(|| Error::NotFound(format!("config key {key:?} is not set")))?;
    }
    Ok(match v {
        toml::Value::String(s) => s,
        toml::Value::Table(t) => toml::to_string(&t).unwrap_or_default(),
        other => other.to_string(),
    })
}

fn parse_value(raw: &str) -> toml_edit::Value {
    // Numbers, booleans, arrays and quoted strings are taken as TOML; anything
    // else is a plain string, so `set … limit 2Gi` needs no quoting.
    let mut v = raw
        .parse::<toml_edit::Value>()
        .ok()
        .filter(|v| !matches!(v, toml_edit::Value::InlineTable(_)))
        .unwrap_or_else(|| toml_edit::Value::from(raw));
    // The default decor (`key = value`), not the raw text's spacing.
    v.decor_mut().clear();
    v
}

/// Sets `key` in the scope's file, keeping comments and layout.
pub fn set_value(dirs: &StateDir, scope: &Scope, key: &str, raw: &str) -> Result<()> {
    let path = scope.file(dirs);
    let parts = split_key(key)?;
    // Concurrent `set`s must not lose each other's change: the whole
    // read-modify-write holds an exclusive lock on the file's directory.
    let dir = path.parent().unwrap_or(dirs.root());
    dirs.ensure_sub(dir)?;
    let mut lock = fd_lock::RwLock::new(std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?);
    let _guard = lock.write().map_err(|e| Error::io(dir, e))?;
    let text = match super::read_text(&path)? {
        Some(t) => t,
        None => match scope {
            Scope::Global => TEMPLATE.to_owned(),
            Scope::Instance(id) => {
                format!("# Overrides for instance {id}; see config.toml for keys.\n")
            }
        },
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        super::located_at(&path, &text, e.message(), e.span())
    })?;
    let (last, tables) = parts
        .split_last()
        .expect("split_key returns at least one part");
    // A new table goes at the end of the file, after the comments that
    // end it (they are the commented examples of the table above, and
    // uncommenting one must not put it into the new table).
    let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
    let mut created = false;
    let mut item = doc.as_item_mut();
    for part in tables {
        let table = item
            .as_table_like_mut()
            .ok_or_else(|| Error::Invalid(format!("{key}: {part} is not a table")))?;
        if table.get(part).is_none() {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            table.insert(part, toml_edit::Item::Table(t));
            created = true;
        }
        item = table.get_mut(part).expect("just inserted");
    }
    if created && !trailing.trim().is_empty() {
        if let Some(t) = item.as_table_mut() {
            let sep = if trailing.ends_with("\n\n") { "" } else { "\n" };
            t.decor_mut().set_prefix(format!("{trailing}{sep}"));
        }
    }
    let table = item
        .as_table_like_mut()
        .ok_or_else(|| Error::Invalid(format!("{key}: parent is not a table")))?;
    let mut value = parse_value(raw);
    match table.get_mut(last) {
        // Replace the value only: the key keeps the comment above it and
        // the value its trailing comment.
        Some(toml_edit::Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        _ => {
            table.insert(last, toml_edit::Item::Value(value));
        }
    }
    if created && !trailing.trim().is_empty() {
        doc.set_trailing("");
    }
    let new_text = doc.to_string();
    check_text(&path, &new_text).map_err(|e| {
        Error::Invalid(format!(
            "cannot set {key} = {:?} (file left unchanged): {e}",
            crate::core::types::truncate_for_message(raw)
        ))
    })?;
    write_private(dirs, &path, &new_text)
}

/// Writes a config file atomically with mode 0600 (errors name `path`).
fn write_private(dirs: &StateDir, path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(dirs.root());
    dirs.ensure_sub(dir)?;
    crate::core::paths::atomic_write(path, text.as_bytes())
}

/// Opens `$VISUAL`/`$EDITOR` on a copy of the scope's file; keeps the edit
/// only when it is valid. An invalid edit is handed to `again`, which says
/// whether to open the editor on it again (the CLI asks on a terminal).
pub fn edit_interactively(
    dirs: &StateDir,
    scope: &Scope,
    again: &mut dyn FnMut(&Error) -> bool,
) -> Result<bool> {
    let path = scope.file(dirs);
    let dir = path.parent().unwrap_or(dirs.root()).to_path_buf();
    dirs.ensure_sub(&dir)?;
    let original = match super::read_text(&path)? {
        Some(t) => t,
        None => match scope {
            Scope::Global => TEMPLATE.to_owned(),
            Scope::Instance(id) => {
                format!("# Overrides for instance {id}; see config.toml for keys.\n")
            }
        },
    };
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_owned());
    let mut argv = shell_words::split(&editor)
        .map_err(|e| Error::Invalid(format!("$VISUAL/$EDITOR {editor:?}: {e}")))?;
    if argv.is_empty() {
        return Err(Error::Invalid("$VISUAL/$EDITOR is empty".into()));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".edit-")
        .suffix(".toml")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    std::fs::write(tmp.path(), &original).map_err(|e| Error::io(tmp.path(), e))?;
    let program = argv.remove(0);
    loop {
        let status = std::process::Command::new(&program)
            .args(&argv)
            .arg(tmp.path())
            .status()
            .map_err(|e| Error::Other(format!("cannot run editor {program:?}: {e}")))?;
        if !status.success() {
            return Err(Error::Other(format!(
                "editor exited with {status}; {} left unchanged",
                path.display()
            )));
        }
        let edited = std::fs::read_to_string(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
        if edited == original {
            return Ok(false);
        }
        match check_text(&path, &edited) {
            Ok(_) => {
                write_private(dirs, &path, &edited)?;
                return Ok(true);
            }
            Err(e) => {
                if again(&e) {
                    continue;
                }
                return Err(Error::Invalid(format!(
                    "invalid edit discarded; {} left unchanged",
                    path.display()
                )));
            }
        }
    }
}
