//! The boundary: the one layer through which what a box, a repository or
//! the network wrote reaches host code. Everything an agent can write (its
//! mounts, the project and its `.git`, agent state, activity and setup
//! files, the proxy's requests and logs) and everything a cloned repository
//! contains is hostile input here. One submodule per kind of crossing, each
//! with its rule (`docs/SECURITY.md` lists them with their tests):
//!
//! - [`fs`]: files and directories the box can write: no symlink followed,
//!   no blocking on a FIFO or a lock the box holds, sizes capped.
//! - [`text`]: strings on their way to a terminal: control characters (C0,
//!   C1, DEL) and bidirectional overrides shown escaped, never sent.

pub mod boxdir;
pub mod fs;
pub mod json;
pub mod text;

pub use fs::{open_lock, read};
pub use text::printable;
