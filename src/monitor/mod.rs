//! Resource monitor: samples (`stats`), thresholds and alerts.

pub mod alerts;
mod cgroup;
pub mod stats;
