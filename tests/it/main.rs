//! The integration tests, one binary: a module per area (the files next to
//! this one), and the support modules they share, compiled once. Cargo runs
//! the tests of this binary in parallel threads of one process, so a test
//! scopes everything it makes or asserts to its own state home, labels,
//! names and ports (see `common::Env`). What one test does to all of the
//! engine is taken in turns: `require_docker!(alone)` for a test whose load
//! would break its neighbours' time limits, `common::gc_turn` and
//! `common::plant_strays` around `gc` and label-less strays.
//!
//! Only `tests/zz_fault_engine_restart.rs`, which stops and restarts the
//! engine itself, is a binary of its own: cargo runs it after this one.
//!
//! Run one area: `cargo test --test it docker_start::`.

// Support, shared by every module (and by zz_fault_engine_restart.rs).
#[macro_use]
mod common;
mod api_support;
mod docker_support;
mod fake_model;
mod fault_support;
mod health_support;
mod remote_support;
mod tmux_support;

mod agents_activity;
mod agents_resume;
mod agents_worktree;
mod api;
mod api_view;
mod boundary_git;
mod boundary_logs;
mod boundary_state;
mod broker;
mod broker_box;
mod broker_oauth;
mod broker_support;
mod clone_mode;
mod completions;
mod config_cli;
mod daily_small;
mod dashboard_browser;
mod dashboard_terminal;
mod docker_attach;
mod docker_concurrency;
mod docker_context;
mod docker_engine_down;
mod docker_host_tcp;
mod docker_lifecycle;
mod docker_network_pool;
mod docker_projects;
mod docker_start;
mod egress;
mod events_cli;
mod fault_closed_stdout;
mod fault_concurrency;
mod fault_corrupt_files;
mod fault_disk_full;
mod fault_hostile;
mod fault_kill;
mod fault_races;
mod first_hour;
mod first_hour_shell;
mod health_monitor;
mod health_watch;
mod host_runtime;
mod hostile_input;
mod image_build;
mod image_doctor;
mod install_sh;
mod land;
mod listing;
mod login_state;
mod podman;
mod real_agents;
mod real_gemini_hooks;
mod registry_concurrency;
mod registry_corrupt;
mod remote_engine;
mod review_diff;
mod review_send;
mod sandbox_api_limits;
mod sandbox_api_sessions;
mod sandbox_containers;
mod sandbox_project_root;
mod sandbox_state_trust;
mod sandbox_uninstall;
mod shell_integration;
mod shell_start_cache;
mod spend_cli;
mod stale_stop_marker;
mod top_tui;
mod worktree_conventions;
