//! Resource monitor: samples (`stats`), thresholds and alerts.

pub mod alerts;
// Reading containers' cgroups is a Linux fast path; elsewhere the stats stream.
#[cfg(target_os = "linux")]
mod cgroup;
pub mod stats;
