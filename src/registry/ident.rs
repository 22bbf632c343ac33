//! Instance ids from project paths: `<project>-<mode>`, with `-2-`, `-3-` …
//! for a different project of the same name. The same path and mode always
//! map to the same id while its entry exists.

use super::schema::Registry;
use crate::error::{Error, Result};
use crate::types::{InstanceId, Mode, MAX_ID_LEN};
use std::path::{Path, PathBuf};

/// The project a directory belongs to: the nearest enclosing git work tree,
/// else the directory itself (found without forking git).
pub fn resolve_project(dir: &Path) -> Result<PathBuf> {
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let top = dir
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf();
    if top.to_str().is_none() {
        return Err(Error::Usage(format!(
            "project path {:?} is not valid UTF-8; rename the directory",
            top
        )));
    }
    if top.to_str().is_some_and(|s| s.contains(['\n', '\t'])) {
        return Err(Error::Usage(
            "project path contains a newline or tab; rename the directory".into(),
        ));
    }
    Ok(top)
}

/// The project name used in ids, labels and the mount point: the basename
/// with every run of other characters turned into one `_`.
pub fn project_name_of(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let mut in_bad = false;
    for c in base.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
            in_bad = false;
        } else if !in_bad {
            out.push('_');
            in_bad = true;
        }
    }
    let trimmed = out.trim_matches(|c| c == '_' || c == '-');
    let name: String = trimmed.chars().take(MAX_ID_LEN - 48).collect();
    if name.is_empty() {
        "project".to_owned()
    } else {
        name
    }
}

/// The id for `project` + `mode`: the existing one when this project already
/// has an entry, else the first free `<name>-<mode>`, `<name>-2-<mode>`, ….
pub fn derive_id(reg: &Registry, project: &Path, mode: &Mode) -> Result<InstanceId> {
    let path = project.to_string_lossy();
    let name = project_name_of(project);
    let candidate = |n: u32| {
        if n == 1 {
            format!("{name}-{mode}")
        } else {
            format!("{name}-{n}-{mode}")
        }
    };
    let mut first_free = None;
    for n in 1..=10_000u32 {
        let id = InstanceId::parse(&candidate(n))?;
        match reg.get(&id) {
            Some(inst) if inst.project_path == path => return Ok(id),
            Some(_) => {}
            None => {
                first_free.get_or_insert(id);
                // Ids are handed out in order, so past a gap further taken
                // ids only exist if entries were removed; look a little on.
                if n > reg.instances.len() as u32 + 1 {
                    break;
                }
            }
        }
    }
    first_free.ok_or_else(|| Error::Invalid(format!("no free instance id for {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::schema::Instance;
    use crate::types::{Port, Status};

    fn inst(id: &str, path: &str) -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": id, "project_path": path, "project_name": "api",
            "mode": "claude", "status": "running", "port": 9000
        }))
        .unwrap()
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(project_name_of(Path::new("/a/my project")), "my_project");
        assert_eq!(project_name_of(Path::new("/a/$(rm -rf)")), "rm_-rf");
        assert_eq!(project_name_of(Path::new("/a/é")), "project");
        assert_eq!(project_name_of(Path::new("/")), "project");
        assert_eq!(project_name_of(Path::new("/a/..")), "project");
        assert_eq!(project_name_of(Path::new("/a/x\ny")), "x_y");
        let long = format!("/a/{}", "b".repeat(10_000));
        assert!(project_name_of(Path::new(&long)).len() <= MAX_ID_LEN - 48);
        let _ = Port::new(9000);
        let _ = Status::Running;
    }

    #[test]
    fn same_basename_gets_a_number_and_same_path_the_same_id() {
        let mode = Mode::parse("claude").unwrap();
        let mut reg = Registry::default();
        let a = derive_id(&reg, Path::new("/x/api"), &mode).unwrap();
        assert_eq!(a.as_str(), "api-claude");
        reg.instances
            .insert(a.clone(), inst("api-claude", "/x/api"));
        assert_eq!(derive_id(&reg, Path::new("/x/api"), &mode).unwrap(), a);
        let b = derive_id(&reg, Path::new("/y/api"), &mode).unwrap();
        assert_eq!(b.as_str(), "api-2-claude");
        reg.instances
            .insert(b.clone(), inst("api-2-claude", "/y/api"));
        let c = derive_id(&reg, Path::new("/z/api"), &mode).unwrap();
        assert_eq!(c.as_str(), "api-3-claude");
        reg.instances
            .insert(c.clone(), inst("api-3-claude", "/z/api"));
        // Removing the second entry leaves a gap; the third keeps its id.
        reg.instances.remove(&b);
        assert_eq!(derive_id(&reg, Path::new("/z/api"), &mode).unwrap(), c);
        let gem = Mode::parse("gemini").unwrap();
        assert_eq!(
            derive_id(&reg, Path::new("/y/api"), &gem).unwrap().as_str(),
            "api-gemini"
        );
    }
}
