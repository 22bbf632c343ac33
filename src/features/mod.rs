//! Features: each adds to a launch plan or reads state; none imports another.

pub mod activity;
pub mod agent_state;
pub mod clone;
pub mod egress;
pub mod forward;
pub mod land;
pub mod monitor;
pub mod review;
pub mod worktree;
