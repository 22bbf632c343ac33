//! Instance registry: schema, storage and id derivation.

mod budget;
mod ident;
pub mod prompt_file;
mod records;
mod schema;
mod store;

pub use budget::LogBudget;
pub use ident::{derive_id, project_name_of, resolve_project};
pub use records::{
    AlertKind, AlertLevels, CloneInfo, DayAlert, HealthStatus, Pressure, Recovery, Severity,
    WorktreeInfo,
};
pub use schema::*;
pub use store::{parse, Store, MAX_REGISTRY_BYTES};
