//! The bottom layer: types, errors, paths, untrusted input, process facts.

pub mod error;
pub mod paths;
pub mod procinfo;
pub mod spawn;
pub mod types;
pub mod untrusted;
pub mod warning;
