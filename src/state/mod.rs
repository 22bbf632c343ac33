//! What persists on disk: config, the instance registry, events, ports.

pub mod config;
pub mod context;
pub mod events;
pub mod ports;
pub mod project;
pub mod registry;
pub mod spend;
