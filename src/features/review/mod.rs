//! Review: what an agent changed in its work tree (`diff`), as files,
//! hunks and lines, for `ai-sessctl diff`, the API and the dashboard.

pub mod diff;
