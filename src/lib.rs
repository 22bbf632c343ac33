//! ai-sessions: isolated, attachable AI coding-agent instances per project.
//!
//! Layers, each importing only the ones listed before it (see
//! docs/ARCHITECTURE.md): `core` (types, errors, paths, untrusted input,
//! process facts), `state` (config, registry, events, ports), `engine` (the
//! container engine), `launch` (the plan a start carries out), `features`
//! (egress, activity, worktrees, agent state, monitoring), `lifecycle`
//! (runtimes; start, stop, reconcile), `service` (what both front ends
//! call), and the front ends `cli` and `api`.

// No function over 100 lines (the threshold is in clippy.toml); CI denies
// warnings.
#![warn(clippy::too_many_lines)]

pub mod api;
pub mod cli;
pub mod core;
pub mod engine;
pub mod features;
pub mod launch;
pub mod lifecycle;
pub mod service;
pub mod state;
