//! ai-sessions: isolated, attachable AI coding-agent instances per project.
//!
//! The modules follow DESIGN.md: the instance registry, port allocator,
//! config manager and event logger are the core; runtimes (docker, host)
//! run instances; `cmd` holds one module per command group.

pub mod activity;
pub mod agent_state;
pub mod api;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod context;
pub mod egress;
pub mod error;
pub mod events;
pub mod health;
pub mod monitor;
pub mod output;
pub mod paths;
pub mod ports;
pub mod procinfo;
pub mod project;
pub mod prompt_file;
pub mod registry;
pub mod resume;
pub mod runtime;
pub mod shell;
pub mod types;
pub mod untrusted;
pub mod worktree;
