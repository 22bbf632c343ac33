//! Health checker and auto-recovery: the checks that apply to each
//! instance, healing with bounded retries, and `health watch`, which follows
//! the engine's event stream so a dying container shows within a second.

mod checks;
mod heal;
mod watch;

pub use checks::{check, Report, Verdict};
pub use heal::{heal, Healer};
pub use watch::{watch, Notice as WatchNotice};
