//! The container engine (Docker or Podman through bollard).

pub mod attach;
pub mod endpoint;
pub mod logfile;
pub mod network;
pub mod state;
pub mod subnet;
