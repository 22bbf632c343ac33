//! Resource monitor: samples (`stats`), thresholds and alerts.

pub mod alerts;
pub mod stats;
