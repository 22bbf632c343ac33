//! The steps that change the repository, each undone when it fails midway:
//! the main checkout goes back to the commit it was on (it had no
//! uncommitted change to a tracked file, [`super::check::main_clean`]), the
//! worktree's branch to where it pointed.

use super::{commit, common_dir, head_ref, sha, writing, Commit, Strategy, Target};
use crate::core::error::{Error, Result};
use crate::core::untrusted::git::Identity;
use crate::core::untrusted::printable;
use std::path::Path;

/// Lands the branch, as it was at `tip`, with `strategy`; `pending` are
/// its commits the base lacks (for the squash's message). The commit the
/// base is on after.
pub fn land(
    t: &Target,
    strategy: Strategy,
    tip: &str,
    pending: &[Commit],
    who: &Identity,
) -> Result<Commit> {
    let common = common_dir(&t.repo)?;
    match strategy {
        Strategy::Merge => merge(t, &common, tip, who),
        Strategy::Squash => squash(t, &common, tip, pending, who),
        Strategy::Rebase if t.fetched.is_some() => Err(Error::Invalid(format!(
            "a rebase replays the branch in the agent's work tree, which is in its box: \
             land {} with --merge or --squash",
            printable(&t.branch)
        ))),
        Strategy::Rebase => rebase(t, &common, tip, who),
    }?;
    commit(&t.repo, "HEAD")
}

fn merge(t: &Target, common: &Path, tip: &str, who: &Identity) -> Result<()> {
    let msg = format!(
        "Merge branch '{}' into {}",
        printable(&t.branch),
        printable(&t.base)
    );
    in_main(
        t,
        common,
        who,
        &[&[
            "merge",
            "--no-ff",
            "--no-verify",
            "--no-edit",
            "-m",
            &msg,
            tip,
        ]],
    )
}

fn squash(t: &Target, common: &Path, tip: &str, pending: &[Commit], who: &Identity) -> Result<()> {
    let mut msg = format!(
        "Squashed branch '{}' into {}\n\n",
        printable(&t.branch),
        printable(&t.base)
    );
    for c in pending {
        msg.push_str(&format!("* {} {}\n", c.sha, c.subject));
    }
    in_main(
        t,
        common,
        who,
        &[
            &["merge", "--squash", "--no-verify", tip],
            &["commit", "--no-verify", "--quiet", "-m", &msg],
        ],
    )
}

/// The branch replayed onto the base in the worktree, then the base
/// fast-forwarded in the main checkout; the branch is put back when either
/// step fails.
fn rebase(t: &Target, common: &Path, tip: &str, who: &Identity) -> Result<()> {
    let before = sha(&t.worktree, "HEAD")?;
    if before != tip {
        return Err(Error::Invalid(format!(
            "{} moved while landing (the agent committed?); nothing was changed, land again",
            printable(&t.branch)
        )));
    }
    let put_back = |e: Error| {
        // Whatever of the rebase is under way goes; the branch (its
        // worktree was clean) points where it did.
        let _ = writing(&t.worktree, common, &["rebase", "--abort"], who);
        if sha(&t.worktree, "HEAD").ok().as_deref() != Some(before.as_str()) {
            if let Err(undo) = writing(
                &t.worktree,
                common,
                &["reset", "--hard", "--quiet", &before],
                who,
            ) {
                return Error::Invalid(format!(
                    "{e}; and putting {} back to {before} failed: {undo}",
                    t.worktree.display()
                ));
            }
        }
        e
    };
    let onto = head_ref(&t.base);
    let step = ["rebase", "--no-verify", "--quiet", &onto];
    writing(&t.worktree, common, &step, who).map_err(|e| {
        put_back(Error::Invalid(format!(
            "the rebase onto {} failed: {}; nothing was changed",
            printable(&t.base),
            git_said(&e, &step)
        )))
    })?;
    // What the rebase made, not whatever the branch points to by now.
    let rebased = sha(&t.worktree, "HEAD").map_err(put_back)?;
    in_main(
        t,
        common,
        who,
        &[&["merge", "--ff-only", "--quiet", &rebased]],
    )
    .map_err(put_back)
}

/// Runs `steps` in the main checkout; when one fails, the checkout goes
/// back to the commit it was on (no merge left under way) and the error
/// says nothing was changed.
fn in_main(t: &Target, common: &Path, who: &Identity, steps: &[&[&str]]) -> Result<()> {
    let before = sha(&t.repo, "HEAD")?;
    for step in steps {
        if let Err(e) = writing(&t.repo, common, step, who) {
            let undo = writing(
                &t.repo,
                common,
                &["reset", "--hard", "--quiet", &before],
                who,
            );
            let e = git_said(&e, step);
            return Err(Error::Invalid(match undo {
                Ok(_) => format!("git {} stopped: {e}; nothing was changed", step[0]),
                Err(u) => format!(
                    "{e}; and resetting {} to {before} failed: {u}",
                    t.repo.display()
                ),
            }));
        }
    }
    Ok(())
}

/// Commits everything in the worktree (`git add -A`, but for the files
/// named in `keep_out`: copies made into it, not the agent's work), as
/// the user. Its index goes back as it was when the commit fails.
pub fn commit_all(
    t: &Target,
    message: &str,
    keep_out: &[String],
    who: &Identity,
) -> Result<Commit> {
    let common = common_dir(&t.repo)?;
    // Only the untracked ones: a tracked file of that name is the agent's
    // work.
    let excludes: Vec<String> = keep_out
        .iter()
        .filter(|f| {
            let spec = format!(":(literal){f}");
            super::git(&t.worktree, &["ls-files", "--", &spec]).is_ok_and(|o| o.is_empty())
        })
        .map(|f| format!(":(exclude,literal){f}"))
        .collect();
    let mut add = vec!["add", "-A", "--", "."];
    add.extend(excludes.iter().map(String::as_str));
    let done = writing(&t.worktree, &common, &add, who).and_then(|_| {
        writing(
            &t.worktree,
            &common,
            &["commit", "--no-verify", "--quiet", "-m", message],
            who,
        )
    });
    if let Err(e) = done {
        let _ = writing(&t.worktree, &common, &["reset", "--quiet"], who);
        return Err(Error::Invalid(format!(
            "committing the worktree's changes failed: {e}"
        )));
    }
    commit(&t.worktree, "HEAD")
}

/// What git said about `args` failing, without the command line the
/// runner's error starts with.
fn git_said(e: &Error, args: &[&str]) -> String {
    let text = e.to_string();
    let prefix = format!("git {}: ", args.join(" "));
    text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
}
