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
    #[error("{0}")]
    Engine(String),
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

    pub fn not_found(id: &crate::types::InstanceId) -> Self {
        Error::NotFound(format!("no instance {id} (see `ai-sessctl list`)"))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Corrupt { .. } | Error::Invalid(_) => exit::INVALID,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Engine(_) => exit::ENGINE,
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
            Error::Engine(_) => Some(
                "start the engine (`sudo systemctl start docker`, or `dockerd &`) or set runtime = \"host\"",
            ),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
