//! Instance ids from project paths: `<project>-<mode>`, with `-2-`, `-3-` …
//! for a different project of the same name. The same path and mode always
//! map to the same id while its entry exists.

use super::schema::Registry;
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode, MAX_ID_LEN};
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

/// The name part of an entry's id: the id without its `-<mode>`.
fn name_part(inst: &super::schema::Instance) -> Option<&str> {
    inst.id
        .as_str()
        .strip_suffix(inst.mode.as_str())
        .and_then(|s| s.strip_suffix('-'))
}

/// The id for `project` + `mode`. The name is decided per project path,
/// not per agent, so one project keeps one name across agents: the
/// existing entry's id for this path and mode, else the name this path
/// already uses with another agent, else the first `<name>`, `<name>-2`, …
/// no other path uses; then `-<mode>` is appended.
pub fn derive_id(reg: &Registry, project: &Path, mode: &Mode) -> Result<InstanceId> {
    let path = project.to_string_lossy();
    let ours = |i: &&super::schema::Instance| i.project_path == path;
    if let Some(inst) = reg
        .instances
        .values()
        .filter(ours)
        .find(|i| &i.mode == mode)
    {
        return Ok(inst.id.clone());
    }
    // Names other paths hold, and the ones this path holds already.
    let mut taken = std::collections::HashSet::new();
    let mut mine = Vec::new();
    for inst in reg.instances.values() {
        if let Some(n) = name_part(inst) {
            if inst.project_path == path {
                mine.push(n);
            } else {
                taken.insert(n);
            }
        }
    }
    let free = |name: &str| {
        !taken.contains(name)
            && InstanceId::parse(&format!("{name}-{mode}")).is_ok_and(|id| reg.get(&id).is_none())
    };
    mine.sort_unstable();
    if let Some(name) = mine.into_iter().find(|n| free(n)) {
        return InstanceId::parse(&format!("{name}-{mode}"));
    }
    let base = project_name_of(project);
    for n in 1..=10_000u32 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if free(&name) {
            return InstanceId::parse(&format!("{name}-{mode}"));
        }
    }
    Err(Error::Invalid(format!("no free instance id for {base}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Port, Status};
    use crate::state::registry::schema::Instance;

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
            derive_id(&reg, Path::new("/x/api"), &gem).unwrap().as_str(),
            "api-gemini"
        );
    }

    /// One name per project across agents: whichever agent starts first
    /// in either `api`, the other agent in the same project gets the same
    /// name part.
    #[test]
    fn a_project_keeps_its_name_across_agents() {
        let claude = Mode::parse("claude").unwrap();
        let gemini = Mode::parse("gemini").unwrap();
        let mut reg = Registry::default();
        let add = |reg: &mut Registry, path: &str, mode: &Mode| {
            let id = derive_id(reg, Path::new(path), mode).unwrap();
            let mut i = inst(id.as_str(), path);
            i.mode = mode.clone();
            reg.instances.insert(id.clone(), i);
            id.to_string()
        };
        assert_eq!(add(&mut reg, "/src/api", &claude), "api-claude");
        assert_eq!(add(&mut reg, "/work/api", &gemini), "api-2-gemini");
        assert_eq!(add(&mut reg, "/src/api", &gemini), "api-gemini");
        assert_eq!(add(&mut reg, "/work/api", &claude), "api-2-claude");
        // A third one, and the same ids again for the same paths.
        assert_eq!(add(&mut reg, "/x/api", &claude), "api-3-claude");
        assert_eq!(
            derive_id(&reg, Path::new("/work/api"), &claude)
                .unwrap()
                .as_str(),
            "api-2-claude"
        );
        // A project literally named api-2 does not take /work/api's name.
        assert_eq!(add(&mut reg, "/y/api-2", &gemini), "api-2-2-gemini");
    }
}
