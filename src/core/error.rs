//! Library errors and the exit codes the CLI maps them to.

use std::path::PathBuf;

/// Exit codes shared by every command (DESIGN.md "Errors").
pub mod exit {
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const ENGINE: i32 = 4;
    pub const INVALID: i32 = 5;
    pub const FAILURE: i32 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// An instance id the registry does not hold (the CLI adds the
    /// closest id it does hold).
    #[error("no instance {0} (see `ai-sessctl list`)")]
    NoInstance(String),
    /// The engine failed or is out of reach; made by `engine::error`,
    /// which names the endpoint.
    #[error("{0}")]
    Engine(String),
    /// One engine call took longer than it may (the engine answers, and is
    /// busy): made by `engine`, it names the call and how long it waited.
    #[error("{0}")]
    EngineTimeout(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn not_found(id: &crate::core::types::InstanceId) -> Self {
        Error::NoInstance(id.to_string())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Corrupt { .. } | Error::Invalid(_) => exit::INVALID,
            Error::NotFound(_) | Error::NoInstance(_) => exit::NOT_FOUND,
            Error::Engine(_) | Error::EngineTimeout(_) => exit::ENGINE,
            Error::Usage(_) => exit::USAGE,
            Error::Io { .. } | Error::Other(_) => exit::FAILURE,
        }
    }

    /// A short next step for the user, printed under the error line.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Corrupt { .. } => {
                Some("the file was left untouched; `ai-sessctl registry check` explains, `ai-sessctl registry repair` rebuilds")
            }
            #[cfg(target_os = "macos")]
            Error::Engine(_) => Some(
                "start the engine (Docker Desktop, `colima start`, OrbStack) or set runtime = \"host\"",
            ),
            #[cfg(not(target_os = "macos"))]
            Error::Engine(_) => Some(
                "start the engine (`sudo systemctl start docker`, or `dockerd &`) or set runtime = \"host\"",
            ),
            Error::EngineTimeout(_) => Some(
                "the engine is up and busy (e.g. many starts at once): try again, or give it longer (global.engine_timeout)",
            ),
            _ => None,
        }
    }
}

/// The candidate closest to `typed`, when it is close enough to be a typo
/// (a small edit distance for its length), for "did you mean …?".
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|c| *c != typed)
        .map(|c| (strsim::damerau_levenshtein(typed, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
