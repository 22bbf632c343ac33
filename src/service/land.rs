//! `land ID` (the CLI's and the API's): the instance's worktree branch
//! brought into its base branch in the user's main checkout, or pushed for
//! a pull request; then, when asked, its worktree removed or the instance
//! stopped. Every step and every refusal is an event (component `land`).

use crate::core::error::{Error, Result};
use crate::core::types::InstanceId;
use crate::core::untrusted::git::Identity;
use crate::core::untrusted::printable;
use crate::features::land::{self, check, pr, Commit, Strategy, Target};
use crate::features::worktree;
use crate::state::context::Ctx;
use crate::state::events::Level;
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// What to land and how.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub strategy: Strategy,
    /// Commit everything in the worktree first, with this message.
    #[serde(default)]
    pub commit: Option<String>,
    /// Push and open a pull request instead of landing locally.
    #[serde(default)]
    pub pr: bool,
}

/// What a land did.
#[derive(Debug, Clone, Serialize)]
pub struct Landed {
    pub instance: InstanceId,
    pub branch: String,
    pub base: String,
    pub repo: std::path::PathBuf,
    pub worktree: std::path::PathBuf,
    /// The commit `--commit` made in the worktree.
    pub committed: Option<Commit>,
    /// A clone instance's branch (fetched from its box; `worktree` is the
    /// repository itself).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clone: bool,
    #[serde(flatten)]
    pub done: Done,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Done {
    /// The base already holds every commit of the branch.
    Nothing,
    /// The base now holds the branch; `commit` is its new head, `commits`
    /// how many commits of the branch it took in.
    Landed {
        strategy: Strategy,
        commit: Commit,
        commits: usize,
    },
    /// `--pr`: pushed and opened (gh's answer, the pull request's URL).
    PrOpened { url: String },
}

/// At most this many of the branch's commits are listed (a squash's
/// message, a pull request's body).
const LISTED: usize = 200;

/// Lands `id`'s branch; `who` says through what (for the event log).
pub fn land(ctx: &Ctx, id: &InstanceId, req: &Request, who: &str) -> Result<Landed> {
    let inst = super::control::lookup(ctx, id)?;
    let refuse = |e: Error| {
        ctx.events().log(
            Level::Warn,
            "land",
            &format!("land refused: {e}"),
            json!({"instance": id}),
        );
        e
    };
    let t = target(ctx, &inst, req).map_err(refuse)?;
    ctx.events().log(
        Level::Info,
        "land",
        &format!("land started {who}"),
        json!({"instance": id, "branch": t.branch, "base": t.base, "strategy": req.strategy, "pr": req.pr}),
    );
    let mut landed = Landed {
        instance: id.clone(),
        branch: printable(&t.branch),
        base: printable(&t.base),
        repo: t.repo.clone(),
        worktree: t.worktree.clone(),
        committed: None,
        clone: t.fetched.is_some(),
        done: Done::Nothing,
    };
    let done = steps(ctx, id, &t, req, &mut landed.committed).map_err(refuse)?;
    let (message, meta) = match &done {
        Done::Nothing => (
            format!("nothing to land: {} holds all of {}", t.base, t.branch),
            json!({}),
        ),
        Done::Landed {
            strategy, commit, ..
        } => (
            format!("{} {} into {}", strategy.done(), t.branch, t.base),
            json!({"commit": commit.sha, "subject": commit.subject}),
        ),
        Done::PrOpened { url } => (format!("pull request opened: {url}"), json!({"url": url})),
    };
    ctx.events().log(
        Level::Info,
        "land",
        &message,
        json!({"instance": id, "branch": t.branch, "base": t.base, "details": meta}),
    );
    landed.done = done;
    Ok(landed)
}

/// What `inst` lands: its worktree's branch, or a clone instance's branch
/// fetched now (with `--commit`, its uncommitted changes too, committed
/// with that message).
fn target(ctx: &Ctx, inst: &crate::state::registry::Instance, req: &Request) -> Result<Target> {
    let id = &inst.id;
    if let Some(info) = &inst.clone {
        if req.pr {
            return Err(pr_refusal(id));
        }
        let fetched = super::clone::fetch_as(ctx, id, true, req.commit.as_deref())?;
        let from = match (&fetched.uncommitted_ref, &req.commit) {
            (Some(_), None) => {
                return Err(Error::Invalid(format!(
                    "the agent has uncommitted changes in its box; nothing was changed. \
                     Commit them there, or land with `--commit MSG` to commit everything in it as you \
                     (see them: `ai-sessctl diff {id}`)"
                )))
            }
            (Some(r), Some(_)) => r.clone(),
            (None, _) => fetched.branch_ref.clone(),
        };
        let base = info.base.clone().filter(|b| !b.is_empty()).ok_or_else(|| {
            Error::Invalid(format!(
                "{id} was cloned from a detached HEAD: there is no branch to land into; \
                 `git merge {}` where you want it",
                from.trim_start_matches("refs/remotes/")
            ))
        })?;
        return Ok(Target {
            repo: info.repo.clone(),
            worktree: info.repo.clone(),
            branch: crate::features::clone::branch(id),
            base,
            fetched: Some(from),
        });
    }
    let info = inst.worktree.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "{id} does not run in a worktree (it was started without -w NAME) nor on a clone; nothing to land"
        ))
    })?;
    Ok(Target {
        repo: info.repo.clone(),
        worktree: info.path.clone(),
        branch: info.branch.clone(),
        base: worktree::base_branch(&info)?,
        fetched: None,
    })
}

/// Every check, then the one change; `committed` gets the `--commit` one.
fn steps(
    ctx: &Ctx,
    id: &InstanceId,
    t: &Target,
    req: &Request,
    committed: &mut Option<Commit>,
) -> Result<Done> {
    let who = Identity::of(Some(&t.repo));
    if !who.complete() {
        return Err(Error::Invalid(
            "land commits as you, and git does not know who you are (no user.name or user.email); \
             set them: `git config --global user.name \"Your Name\"` and \
             `git config --global user.email you@example.com`"
                .into(),
        ));
    }
    if t.fetched.is_some() {
        return clone_steps(t, req, &who);
    }
    if t.worktree.join(".git").symlink_metadata().is_err() {
        return Err(Error::Invalid(format!(
            "its worktree {} is gone (or holds no .git); nothing to land from",
            t.worktree.display()
        )));
    }
    check::worktree_on_branch(t)?;
    let common = land::common_dir(&t.repo)?;
    if !req.pr {
        check::on_base(t)?;
        check::main_clean(t, &common)?;
    }
    let copy = ctx.global()?.worktree.copy;
    let dirty = worktree::inventory::changes(&t.worktree, Some(&t.branch), &copy, &t.repo)?.dirty;
    match (&req.commit, dirty) {
        (None, true) => {
            return Err(Error::Invalid(format!(
                "the agent has uncommitted changes in its worktree {}; nothing was changed. \
                 Commit them there, or land with `--commit MSG` to commit everything in it as you",
                t.worktree.display()
            )))
        }
        (Some(msg), true) => {
            let c = land::apply::commit_all(t, msg, &copy, &who)?;
            ctx.events().log(
                Level::Info,
                "land",
                &format!("committed the worktree's changes as {}", c.sha),
                json!({"instance": id, "commit": c.sha, "subject": c.subject}),
            );
            *committed = Some(c);
        }
        _ => {}
    }
    let tip = land::tip(t)?;
    let pending = check::pending(t, &tip, LISTED)?;
    if pending.is_empty() {
        return Ok(Done::Nothing);
    }
    if req.pr {
        return pull_request(ctx, id, t, &tip, &pending, &who);
    }
    merge(t, req, &common, &tip, &pending, &who)
}

/// The last checks, which need the merged tree (no conflict, no untracked
/// file of the main checkout in the way), then the land itself.
fn merge(
    t: &Target,
    req: &Request,
    common: &Path,
    tip: &str,
    pending: &[Commit],
    who: &Identity,
) -> Result<Done> {
    match check::merged(t, common, tip)? {
        check::Merged::Conflicts(files) => return Err(check::conflict_refusal(t, &files)),
        check::Merged::Clean(tree) => {
            let in_the_way = check::overwritten(t, &tree)?;
            if !in_the_way.is_empty() {
                return Err(check::overwrite_refusal(t, &in_the_way));
            }
        }
    }
    let commit = land::apply::land(t, req.strategy, tip, pending, who)?;
    Ok(Done::Landed {
        strategy: req.strategy,
        commit,
        commits: pending.len(),
    })
}

/// `--pr` of a clone instance: refused before anything is fetched.
fn pr_refusal(id: &InstanceId) -> Error {
    let fetched = crate::features::clone::fetched_ref(id);
    Error::Invalid(format!(
        "--pr pushes from a worktree; a clone instance's branch is fetched as {fetched} \
         (`ai-sessctl fetch {id}`): push it yourself (`git push origin {fetched}:refs/heads/{}`)",
        printable(&crate::features::clone::branch(id))
    ))
}

/// [`steps`] for a clone instance: its branch (or its `--commit`) was
/// fetched already; the same checks of the main checkout, the same land.
fn clone_steps(t: &Target, req: &Request, who: &Identity) -> Result<Done> {
    let common = land::common_dir(&t.repo)?;
    check::on_base(t)?;
    check::main_clean(t, &common)?;
    let tip = land::tip(t)?;
    let pending = check::pending(t, &tip, LISTED)?;
    if pending.is_empty() {
        return Ok(Done::Nothing);
    }
    merge(t, req, &common, &tip, &pending, who)
}

/// `--pr`: a title from the one commit (else the branch), the commits as
/// the body.
fn pull_request(
    ctx: &Ctx,
    id: &InstanceId,
    t: &Target,
    tip: &str,
    pending: &[Commit],
    who: &Identity,
) -> Result<Done> {
    let title = match pending {
        [one] => one.subject.clone(),
        _ => printable(&t.branch),
    };
    let body: String = pending
        .iter()
        .map(|c| format!("* {} {}\n", c.sha, c.subject))
        .collect();
    match pr::open(t, tip, &title, &body, who)? {
        pr::Outcome::Opened { url } => {
            ctx.events().log(
                Level::Info,
                "land",
                &format!("pushed {} to origin", t.branch),
                json!({"instance": id, "branch": t.branch}),
            );
            Ok(Done::PrOpened { url })
        }
        pr::Outcome::ToRun {
            reason,
            pushed,
            commands,
        } => {
            if pushed {
                ctx.events().log(
                    Level::Info,
                    "land",
                    &format!("pushed {} to origin", t.branch),
                    json!({"instance": id, "branch": t.branch}),
                );
            }
            Err(Error::Invalid(format!(
                "no pull request opened: {reason}; {}. To do it yourself:\n  {}",
                if pushed {
                    "the branch was pushed"
                } else {
                    "nothing was pushed"
                },
                commands.join("\n  ")
            )))
        }
    }
}

/// What to do with the instance after it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Keep,
    /// Stop it; its worktree stays.
    Stop,
    /// Remove its worktree (its branch is kept) and the instance with it
    /// (it cannot run without its directory; its agent state is kept), as
    /// `rm --worktree` does.
    Remove,
}

/// Carries out `after`; what was done, a line each.
pub fn after(ctx: &Ctx, id: &InstanceId, after: After) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let live = super::control::lookup(ctx, id)?.status.is_live();
    if after == After::Keep {
        return Ok(notes);
    }
    if live {
        super::control::stop(ctx, id, "stopped after land")?;
        ctx.events().log(
            Level::Info,
            "land",
            "stopped after land",
            json!({"instance": id}),
        );
        notes.push(format!("stopped {id}"));
    }
    if after == After::Stop {
        return Ok(notes);
    }
    if super::control::lookup(ctx, id)?.clone.is_some() {
        crate::lifecycle::remove(ctx, id, false, false)?;
        ctx.events().log(
            Level::Info,
            "land",
            &format!("removed {id} and its clone"),
            json!({"instance": id}),
        );
        notes.push(format!(
            "removed {id} and its clone (its branch stays fetched)"
        ));
        return Ok(notes);
    }
    let reg = crate::lifecycle::refresh_quietly(ctx)?;
    let Some(plan) = worktree::remove::plan(ctx, &reg, id)? else {
        notes.push("its worktree is already gone".into());
        return Ok(notes);
    };
    let path = plan.info.path.display().to_string();
    if !plan.shared_with.is_empty() {
        let others: Vec<String> = plan.shared_with.iter().map(|i| i.to_string()).collect();
        notes.push(format!(
            "kept its worktree {path}: {} runs in it too",
            others.join(", ")
        ));
        return Ok(notes);
    }
    if let Some(why) = worktree::remove::refusal(&plan) {
        notes.push(format!("kept its worktree: {why}"));
        return Ok(notes);
    }
    worktree::remove::begin(ctx, id, &plan)?;
    crate::lifecycle::remove(ctx, id, false, false)?;
    worktree::remove::remove(&plan)?;
    worktree::remove::done(ctx, id);
    ctx.events().log(
        Level::Info,
        "land",
        &format!("removed the worktree {path} and {id}"),
        json!({"instance": id, "worktree": path, "branch": plan.info.branch}),
    );
    notes.push(format!(
        "removed its worktree {path} and the instance {id} (branch {} is kept)",
        plan.info.branch
    ));
    Ok(notes)
}
