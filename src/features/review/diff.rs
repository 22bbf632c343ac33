//! The changes in a work tree against a base commit: tracked files
//! (committed and uncommitted) from our hardened `git diff`, untracked
//! files (not ignored) read here beneath the work tree, never through a
//! symlink. Plain paths and refs in, plain data out; every string is the
//! agent's (a caller escapes it before a terminal sees it).

use crate::core::error::{Error, Result};
use crate::core::untrusted::git;
use serde::Serialize;
use std::path::Path;

/// At most this many files are listed; the rest set `truncated`.
pub const MAX_FILES: usize = 1000;
/// At most this many lines over all hunks; the rest set `truncated`.
pub const MAX_LINES: usize = 20_000;
/// A longer line is cut to this many characters.
pub const MAX_LINE_CHARS: usize = 2000;
/// At most this much of an untracked file is read.
pub const MAX_UNTRACKED_BYTES: u64 = 1 << 20;
/// At most this many untracked files are read.
const MAX_UNTRACKED: usize = 1000;
/// At most this much of `git diff`'s output is read.
const MAX_DIFF_BYTES: u64 = 64 << 20;

/// git's empty tree: the base of a repository without a commit.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Modified,
    Added,
    Deleted,
    Renamed,
    Untracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Context,
    Add,
    Del,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub kind: Kind,
    /// Its number in the old file (none for an added line).
    pub old: Option<u32>,
    /// Its number in the new file (none for a removed line).
    pub new: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// `@@ -1,3 +1,4 @@ context`, as git wrote it.
    pub header: String,
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    pub status: Status,
    pub binary: bool,
    pub added: usize,
    pub removed: usize,
    pub hunks: Vec<Hunk>,
    /// Lines of this file were left out (a cap was reached).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The commit the work tree is compared with.
    pub base_commit: String,
    pub files: Vec<File>,
    pub added: usize,
    pub removed: usize,
    /// Files or lines were left out (a cap was reached).
    pub truncated: bool,
}

/// What the work tree is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Against<'a> {
    /// The merge-base of the work tree's `HEAD` and this branch: what the
    /// work did since it left the branch, not what the branch did since.
    MergeBase(&'a str),
    /// `HEAD`: the uncommitted changes only.
    Head,
}

/// The changes in the work tree `dir` against `against`.
pub fn changes(dir: &Path, against: Against<'_>) -> Result<Diff> {
    let base_commit = base_commit(dir, against)?;
    let (mut files, mut budget) = diff_of(dir, &[&base_commit])?;
    for rel in untracked(dir)? {
        if files.len() >= MAX_FILES {
            budget.truncated = true;
            break;
        }
        if let Some(f) = untracked_file(dir, &rel, &mut budget) {
            files.push(f);
        }
    }
    if files.len() > MAX_FILES {
        files.truncate(MAX_FILES);
        budget.truncated = true;
    }
    Ok(Diff {
        base_commit,
        added: files.iter().map(|f| f.added).sum(),
        removed: files.iter().map(|f| f.removed).sum(),
        truncated: budget.truncated || files.iter().any(|f| f.truncated),
        files,
    })
}

/// `git diff REVS…` in `dir` (guarded: no external diff, no textconv),
/// parsed within the budget; a diff cut at its size limit is kept.
fn diff_of(dir: &Path, revs: &[&str]) -> Result<(Vec<File>, Budget)> {
    let mut args = vec![
        "-c",
        "core.quotePath=false",
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--find-renames",
        "--src-prefix=a/",
        "--dst-prefix=b/",
    ];
    args.extend_from_slice(revs);
    args.push("--");
    let out = git::output_in_work_tree(dir, &args, MAX_DIFF_BYTES)?;
    let cut = out.stdout.len() as u64 >= MAX_DIFF_BYTES;
    if !out.status.success() && !cut {
        return Err(Error::Invalid(format!(
            "git diff in {}: {}",
            dir.display(),
            crate::core::untrusted::text::printable_bytes(&out.stderr).trim()
        )));
    }
    let mut budget = Budget {
        truncated: cut,
        ..Budget::default()
    };
    let files = parse(&out.stdout, &mut budget);
    Ok((files, budget))
}

/// The changes from commit `base` to commit `tip` in the repository
/// `repo` (a clone instance's work, fetched): no work tree is read.
pub fn between(repo: &Path, base: &str, tip: &str) -> Result<Diff> {
    let (mut files, mut budget) = diff_of(repo, &[base, tip])?;
    if files.len() > MAX_FILES {
        files.truncate(MAX_FILES);
        budget.truncated = true;
    }
    Ok(Diff {
        base_commit: base.to_owned(),
        added: files.iter().map(|f| f.added).sum(),
        removed: files.iter().map(|f| f.removed).sum(),
        truncated: budget.truncated || files.iter().any(|f| f.truncated),
        files,
    })
}

fn base_commit(dir: &Path, against: Against<'_>) -> Result<String> {
    match against {
        Against::Head => Ok(git::run_in_work_tree(
            dir,
            &["rev-parse", "--verify", "--quiet", "HEAD"],
        )
        .unwrap_or_else(|_| EMPTY_TREE.to_owned())),
        Against::MergeBase(branch) => {
            // A local branch, else a remote-tracking one (`origin/main`).
            let full = [
                format!("refs/heads/{branch}"),
                format!("refs/remotes/{branch}"),
            ]
            .into_iter()
            .find(|r| git::run_in_work_tree(dir, &["rev-parse", "--verify", "--quiet", r]).is_ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no branch {} to compare with",
                    dir.display(),
                    crate::core::untrusted::printable(branch)
                ))
            })?;
            git::run_in_work_tree(dir, &["merge-base", "HEAD", &full]).map_err(|e| {
                Error::Invalid(format!(
                    "{}: no common commit with {}: {e}",
                    dir.display(),
                    crate::core::untrusted::printable(branch)
                ))
            })
        }
    }
}

/// Untracked files git does not ignore (`-z`: names as they are).
fn untracked(dir: &Path) -> Result<Vec<String>> {
    let out = git::output_in_work_tree(
        dir,
        &["ls-files", "--others", "--exclude-standard", "-z", "--"],
        1 << 20,
    )?;
    if !out.status.success() && out.stdout.len() < 1 << 20 {
        return Err(Error::Invalid(format!(
            "git ls-files in {}: {}",
            dir.display(),
            crate::core::untrusted::text::printable_bytes(&out.stderr).trim()
        )));
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty() && !p.ends_with(b"/"))
        .take(MAX_UNTRACKED)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// How many lines are left to give out.
pub struct Budget {
    used: usize,
    max: usize,
    truncated: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::with_max(MAX_LINES)
    }
}

impl Budget {
    pub fn with_max(max: usize) -> Self {
        Budget {
            used: 0,
            max,
            truncated: false,
        }
    }

    fn take(&mut self) -> bool {
        if self.used >= self.max {
            self.truncated = true;
            return false;
        }
        self.used += 1;
        true
    }
}

/// An untracked file as an added one: a regular file read beneath `dir`
/// (no symlink at any component), a symlink as its target (as git shows
/// one), anything else skipped.
fn untracked_file(dir: &Path, rel: &str, budget: &mut Budget) -> Option<File> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(dir.join(rel)).ok()?;
    let mut truncated = false;
    let raw = if meta.file_type().is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        let target = std::fs::read_link(dir.join(rel)).ok()?;
        target.as_os_str().as_bytes().to_vec()
    } else if meta.is_file() {
        let root = crate::core::untrusted::beneath::Dir::open(dir).ok()?;
        let f = root.open_file(Path::new(rel)).ok()?;
        let mut raw = Vec::new();
        f.take(MAX_UNTRACKED_BYTES).read_to_end(&mut raw).ok()?;
        truncated = meta.len() > MAX_UNTRACKED_BYTES;
        raw
    } else {
        return None;
    };
    let mut file = File {
        path: rel.to_owned(),
        old_path: None,
        status: Status::Untracked,
        binary: raw.iter().take(8000).any(|b| *b == 0),
        added: 0,
        removed: 0,
        hunks: Vec::new(),
        truncated,
    };
    if file.binary || raw.is_empty() {
        return Some(file);
    }
    let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
    let mut hunk = Hunk {
        header: String::new(),
        old_start: 0,
        old_lines: 0,
        new_start: 1,
        new_lines: 0,
        lines: Vec::new(),
    };
    for (i, l) in text.split(|b| *b == b'\n').enumerate() {
        file.added += 1;
        if !budget.take() {
            file.truncated = true;
            continue;
        }
        hunk.lines.push(Line {
            kind: Kind::Add,
            old: None,
            new: u32::try_from(i + 1).ok(),
            text: line_text(l),
        });
    }
    hunk.new_lines = u32::try_from(file.added).unwrap_or(u32::MAX);
    hunk.header = format!("@@ -0,0 +1,{} @@", hunk.new_lines);
    file.hunks.push(hunk);
    Some(file)
}

/// A content line as text: lossy UTF-8, cut to [`MAX_LINE_CHARS`].
fn line_text(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() <= MAX_LINE_CHARS {
        return s.into_owned();
    }
    let mut cut: String = s.chars().take(MAX_LINE_CHARS).collect();
    cut.push('…');
    cut
}

/// Parses `git diff` output (unified, no color) into files.
pub fn parse(out: &[u8], budget: &mut Budget) -> Vec<File> {
    let mut files: Vec<File> = Vec::new();
    let mut header: Option<Header> = None;
    // Lines left in the current hunk: (old, new).
    let mut left = (0u32, 0u32);
    let (mut old_no, mut new_no) = (0u32, 0u32);
    for raw in out.split(|b| *b == b'\n') {
        let in_hunk = matches!(raw.first(), None | Some(b' ' | b'+' | b'-' | b'\\'));
        if left != (0, 0) && !in_hunk {
            // Counts that do not add up: read on as headers.
            left = (0, 0);
        }
        if left != (0, 0) {
            let (kind, text) = match raw.first() {
                Some(b'+') => (Kind::Add, &raw[1..]),
                Some(b'-') => (Kind::Del, &raw[1..]),
                // `\ No newline at end of file`
                Some(b'\\') => continue,
                _ => (Kind::Context, raw.get(1..).unwrap_or_default()),
            };
            let Some(file) = files.last_mut() else {
                continue;
            };
            let (old, new) = match kind {
                Kind::Context => {
                    left = (left.0.saturating_sub(1), left.1.saturating_sub(1));
                    old_no += 1;
                    new_no += 1;
                    (Some(old_no - 1), Some(new_no - 1))
                }
                Kind::Add => {
                    left.1 = left.1.saturating_sub(1);
                    file.added += 1;
                    new_no += 1;
                    (None, Some(new_no - 1))
                }
                Kind::Del => {
                    left.0 = left.0.saturating_sub(1);
                    file.removed += 1;
                    old_no += 1;
                    (Some(old_no - 1), None)
                }
            };
            if !budget.take() {
                file.truncated = true;
                continue;
            }
            if let Some(h) = file.hunks.last_mut() {
                h.lines.push(Line {
                    kind,
                    old,
                    new,
                    text: line_text(text),
                });
            }
            continue;
        }
        if let Some(rest) = raw.strip_prefix(b"diff --git ") {
            if let Some(h) = header.take() {
                files.push(h.file());
            }
            header = Some(Header::new(rest));
            continue;
        }
        if raw.starts_with(b"@@ ") {
            let Some(hunk) = hunk_header(raw) else {
                continue;
            };
            if let Some(h) = header.take() {
                files.push(h.file());
            }
            let Some(file) = files.last_mut() else {
                continue;
            };
            left = (hunk.old_lines, hunk.new_lines);
            (old_no, new_no) = (hunk.old_start, hunk.new_start);
            file.hunks.push(hunk);
            continue;
        }
        if let Some(h) = header.as_mut() {
            h.line(raw);
        }
    }
    if let Some(h) = header.take() {
        files.push(h.file());
    }
    files
}

/// `@@ -a[,b] +c[,d] @@ …`
fn hunk_header(raw: &[u8]) -> Option<Hunk> {
    let s = String::from_utf8_lossy(raw);
    let rest = s.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (old_start, old_lines) = range(old)?;
    let (new_start, new_lines) = range(new)?;
    Some(Hunk {
        header: line_text(raw),
        old_start,
        old_lines,
        new_start,
        new_lines,
        lines: Vec::new(),
    })
}

/// What the lines between `diff --git` and the first hunk say of a file.
struct Header {
    /// From the `diff --git a/X b/Y` line (ambiguous when unquoted with
    /// spaces: used only when nothing better is said).
    git_paths: Option<(String, String)>,
    old: Option<String>,
    new: Option<String>,
    rename: (Option<String>, Option<String>),
    added: bool,
    deleted: bool,
    binary: bool,
}

impl Header {
    fn new(rest: &[u8]) -> Header {
        Header {
            git_paths: git_paths(rest),
            old: None,
            new: None,
            rename: (None, None),
            added: false,
            deleted: false,
            binary: false,
        }
    }

    fn line(&mut self, raw: &[u8]) {
        let path = |p: &[u8]| unquote(p);
        if raw.starts_with(b"new file mode ") {
            self.added = true;
        } else if raw.starts_with(b"deleted file mode ") {
            self.deleted = true;
        } else if let Some(p) = raw.strip_prefix(b"rename from ") {
            self.rename.0 = Some(path(p));
        } else if let Some(p) = raw.strip_prefix(b"rename to ") {
            self.rename.1 = Some(path(p));
        } else if let Some(p) = raw.strip_prefix(b"--- ") {
            self.old = strip_side(&path(p), "a/");
        } else if let Some(p) = raw.strip_prefix(b"+++ ") {
            self.new = strip_side(&path(p), "b/");
        } else if raw.starts_with(b"Binary files ") || raw == b"GIT binary patch" {
            self.binary = true;
        }
    }

    fn file(self) -> File {
        let (git_old, git_new) = self.git_paths.unzip();
        let old = self.rename.0.or(self.old).or(git_old).unwrap_or_default();
        let new = self.rename.1.or(self.new).or(git_new).unwrap_or_default();
        let status = if self.added {
            Status::Added
        } else if self.deleted {
            Status::Deleted
        } else if old != new && !old.is_empty() {
            Status::Renamed
        } else {
            Status::Modified
        };
        let (path, old_path) = match status {
            Status::Deleted => (old, None),
            Status::Renamed => (new, Some(old)),
            _ => (new, None),
        };
        File {
            path,
            old_path,
            status,
            binary: self.binary,
            added: 0,
            removed: 0,
            hunks: Vec::new(),
            truncated: false,
        }
    }
}

/// `a/X` → `X`; `/dev/null` → none.
fn strip_side(p: &str, side: &str) -> Option<String> {
    if p == "/dev/null" {
        return None;
    }
    Some(p.strip_prefix(side).unwrap_or(p).to_owned())
}

/// The two paths of `a/X b/Y` (each maybe quoted). Unquoted with the same
/// path on both sides (no rename), the line splits in its middle.
fn git_paths(rest: &[u8]) -> Option<(String, String)> {
    if rest.starts_with(b"\"") {
        let (first, tail) = quoted_token(rest)?;
        let second = tail.strip_prefix(b" ")?;
        let a = strip_side(&first, "a/")?;
        let b = strip_side(&unquote(second), "b/")?;
        return Some((a, b));
    }
    let s = String::from_utf8_lossy(rest);
    let len = s.len();
    if len % 2 == 1 {
        let (a, b) = (&s[..len / 2], &s[len / 2 + 1..]);
        if let (Some(a), Some(b)) = (a.strip_prefix("a/"), b.strip_prefix("b/")) {
            if a == b {
                return Some((a.to_owned(), b.to_owned()));
            }
        }
    }
    let (a, b) = s.split_once(" b/")?;
    Some((a.strip_prefix("a/")?.to_owned(), b.to_owned()))
}

/// The first C-quoted token of `raw` and what follows it.
fn quoted_token(raw: &[u8]) -> Option<(String, &[u8])> {
    let mut i = 1;
    while i < raw.len() {
        match raw[i] {
            b'\\' => i += 2,
            b'"' => return Some((unquote(&raw[..=i]), &raw[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// A path as git prints it: C-quoted (`"a\tb"`, octal bytes) when it holds
/// special characters, else as is.
fn unquote(raw: &[u8]) -> String {
    let Some(inner) = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) else {
        return String::from_utf8_lossy(raw).into_owned();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' || i + 1 == inner.len() {
            out.push(inner[i]);
            i += 1;
            continue;
        }
        let c = inner[i + 1];
        i += 2;
        out.push(match c {
            b'a' => 7,
            b'b' => 8,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 11,
            b'f' => 12,
            b'r' => b'\r',
            b'0'..=b'3' if i + 2 <= inner.len() => {
                let oct = [c, inner[i], inner[i + 1]];
                i += 2;
                oct.iter().fold(0u8, |acc, d| {
                    acc.wrapping_mul(8).wrapping_add(d.wrapping_sub(b'0'))
                })
            }
            other => other,
        });
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,4 @@ def main():
 a
-b
+B
+c
 
diff --git a/old name b/new name
similarity index 90%
rename from old name
rename to new name
diff --git \"a/t\\tab\" \"b/t\\tab\"
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ \"b/t\\tab\"
@@ -0,0 +1 @@
+x
\\ No newline at end of file
diff --git a/img.png b/img.png
deleted file mode 100644
index 4444444..0000000
Binary files a/img.png and /dev/null differ
";

    #[test]
    fn files_hunks_and_line_numbers_are_read() {
        let files = parse(SAMPLE, &mut Budget::default());
        assert_eq!(files.len(), 4, "{files:#?}");
        let app = &files[0];
        assert_eq!(
            (app.path.as_str(), app.status),
            ("src/app.py", Status::Modified)
        );
        assert_eq!((app.added, app.removed), (2, 1));
        let h = &app.hunks[0];
        assert_eq!(
            (h.old_start, h.old_lines, h.new_start, h.new_lines),
            (1, 3, 1, 4)
        );
        let got: Vec<_> = h
            .lines
            .iter()
            .map(|l| (l.kind, l.old, l.new, l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Context, Some(1), Some(1), "a"),
                (Kind::Del, Some(2), None, "b"),
                (Kind::Add, None, Some(2), "B"),
                (Kind::Add, None, Some(3), "c"),
                (Kind::Context, Some(3), Some(4), ""),
            ]
        );
        assert_eq!(files[1].status, Status::Renamed);
        assert_eq!(files[1].path, "new name");
        assert_eq!(files[1].old_path.as_deref(), Some("old name"));
        assert_eq!(
            (files[2].path.as_str(), files[2].status),
            ("t\tab", Status::Added)
        );
        assert_eq!(files[2].added, 1);
        assert_eq!(
            (files[3].path.as_str(), files[3].status),
            ("img.png", Status::Deleted)
        );
        assert!(files[3].binary);
    }

    #[test]
    fn the_line_budget_cuts_and_says_so() {
        let files = parse(SAMPLE, &mut Budget::with_max(2));
        assert_eq!(files[0].hunks[0].lines.len(), 2);
        assert!(files[0].truncated);
        // The counts stay whole.
        assert_eq!((files[0].added, files[0].removed), (2, 1));
    }

    #[test]
    fn octal_quoted_paths_are_decoded() {
        assert_eq!(unquote(b"\"caf\\303\\251\""), "café");
        assert_eq!(unquote(b"plain"), "plain");
    }
}
