//! The boundary: the one layer through which what a box, a repository or
//! the network wrote reaches host code. Everything an agent can write (its
//! mounts, the project and its `.git`, agent state, activity and setup
//! files, the proxy's requests and logs) and everything a cloned repository
//! contains is hostile input here. One submodule per kind of crossing, each
//! with its rule (`docs/SECURITY.md` lists them with their tests):
//!
//! - [`fs`]: files and directories the box can write: no symlink followed,
//!   no blocking on a FIFO or a lock the box holds, sizes capped.
//! - [`archive`]: a tar of a path in a box, sent by its engine: one small
//!   regular file taken, anything else (a link, a directory, more) nothing.
//! - [`addr`]: addresses a name from the box resolved to, before the
//!   egress proxy connects: public only (private ranges where allowed).
//! - [`git`]: our own git calls: no program the repository names runs
//!   (Landlock lets git execute only git; every command key emptied).
//! - [`beneath`]: files copied between a repository and its worktrees:
//!   regular files beneath the tree only, no symlink at any component.
//! - [`tree`]: directory trees a box wrote (old agent state): walked and
//!   moved relative to directory fds, no link followed, depth capped.
//! - [`boxdir`]: a directory a box writes (the proxy's log): files opened
//!   beneath its fd, never a symlink, a FIFO or a lock, reads capped.
//! - [`json`]: JSON a terminal may print: C1, DEL and bidi escaped too.
//! - [`screen`]: an agent's terminal stream played into an emulator; only
//!   the text of its cells comes out (`logs`, the dashboard's log panel).
//! - [`text`]: strings on their way to a terminal: control characters (C0,
//!   C1, DEL) and bidirectional overrides shown escaped, never sent.

pub mod addr;
pub mod archive;
pub mod beneath;
pub mod boxdir;
pub mod fs;
pub mod git;
pub mod json;
pub mod screen;
pub mod text;
pub mod tree;

pub use fs::{open_lock, read};
pub use text::printable;
