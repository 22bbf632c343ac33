//! Instance registry: schema, storage and id derivation.

mod ident;
mod records;
mod schema;
mod store;

pub use ident::{derive_id, project_name_of, resolve_project};
pub use records::{AlertKind, AlertLevels, Recovery, Severity, WorktreeInfo};
pub use schema::*;
pub use store::{atomic_write, parse, Store, MAX_REGISTRY_BYTES};
