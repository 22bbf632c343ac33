//! Warnings: what went wrong without failing an operation. Library code
//! returns them to its caller; only the CLI writes them to a terminal (the
//! API returns them in its answers or drops them).

use std::fmt;

/// How loud a warning is: `Debug` ones are shown only with
/// `AI_SESSIONS_DEBUG` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Loudness {
    Warn,
    Debug,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub loudness: Loudness,
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The warnings an operation collected, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Warnings(Vec<Warning>);

impl Warnings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn warn(&mut self, text: impl Into<String>) {
        self.0.push(Warning {
            loudness: Loudness::Warn,
            text: text.into(),
        });
    }

    /// Worth knowing only when debugging (e.g. a best-effort step failed).
    pub fn debug(&mut self, text: impl Into<String>) {
        self.0.push(Warning {
            loudness: Loudness::Debug,
            text: text.into(),
        });
    }

    pub fn extend(&mut self, other: Warnings) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Warning> {
        self.0.iter()
    }
}

impl IntoIterator for Warnings {
    type Item = Warning;
    type IntoIter = std::vec::IntoIter<Warning>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
