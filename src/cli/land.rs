//! `land ID`: prints what landed, then removes the worktree or stops the
//! instance as the flags say, or asks on a terminal.

use super::{Ctx, LandArgs};
use crate::core::error::Result;
use crate::features::land::Strategy;
use crate::service::land::{self, After, Done, Request};

pub fn land(ctx: &Ctx, a: LandArgs) -> Result<u8> {
    let strategy = if a.squash {
        Strategy::Squash
    } else if a.rebase {
        Strategy::Rebase
    } else {
        Strategy::Merge
    };
    let req = Request {
        strategy,
        commit: a.commit,
        pr: a.pr,
    };
    let landed = land::land(ctx, &a.id, &req, "from the CLI")?;
    if let Some(c) = &landed.committed {
        eprintln!(
            "committed the worktree's changes as you: {} {}",
            c.sha, c.subject
        );
    }
    match &landed.done {
        Done::Nothing => {
            eprintln!(
                "nothing to land: {} already holds every commit of {}",
                landed.base, landed.branch
            );
            return Ok(0);
        }
        Done::Landed {
            strategy,
            commit,
            commits,
        } => {
            eprintln!(
                "{} {} into {} in {} ({commits} commit{}); {} is now at {} {}",
                strategy.done(),
                landed.branch,
                landed.base,
                landed.repo.display(),
                if *commits == 1 { "" } else { "s" },
                landed.base,
                commit.sha,
                commit.subject
            );
        }
        Done::PrOpened { url } => {
            eprintln!("pushed {} and opened a pull request: {url}", landed.branch);
        }
    }
    let after = choose(&a.id, &landed, a.remove_worktree || a.yes, a.stop);
    for note in land::after(ctx, &a.id, after)? {
        eprintln!("{note}");
    }
    if after == After::Keep && landed.clone {
        eprintln!(
            "kept {id} and its clone; `ai-sessctl rm {id}` removes both (what was fetched stays)",
            id = a.id
        );
    } else if after == After::Keep {
        eprintln!(
            "kept its worktree {} and {}; `ai-sessctl rm --worktree {}` removes both (the branch stays)",
            landed.worktree.display(),
            a.id,
            a.id
        );
    }
    Ok(0)
}

/// The flags' choice, else the user's on a terminal, else keep.
fn choose(
    id: &crate::core::types::InstanceId,
    l: &land::Landed,
    remove: bool,
    stop: bool,
) -> After {
    use std::io::IsTerminal;
    if remove {
        return After::Remove;
    }
    if stop {
        return After::Stop;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return After::Keep;
    }
    let question = match l.clone {
        true => format!("remove {id} and its clone now (what was fetched is kept)? [y/N] "),
        false => format!(
            "remove its worktree {} and {id} now (the branch {} is kept)? [y/N] ",
            l.worktree.display(),
            l.branch
        ),
    };
    if ask(&question) {
        After::Remove
    } else if ask(&format!("stop {id}? [y/N] ")) {
        After::Stop
    } else {
        After::Keep
    }
}

fn ask(question: &str) -> bool {
    use std::io::{BufRead, Write};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}
