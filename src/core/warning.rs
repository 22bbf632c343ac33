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

/// Where a warning goes that arises below an interface too widely used to
/// return it (the event log and the registry's prompt file are written from
/// every layer): the front end installs a sink once (the CLI prints to
/// stderr); without one such warnings are dropped.
static SINK: std::sync::OnceLock<fn(&Warning)> = std::sync::OnceLock::new();

/// Installs the sink of [`report`] (the first one installed stays).
pub fn set_sink(sink: fn(&Warning)) {
    let _ = SINK.set(sink);
}

/// Hands a warning to the installed sink, if any.
pub fn report(w: Warning) {
    if let Some(sink) = SINK.get() {
        sink(&w);
    }
}

/// [`report`] of a `Warn` warning.
pub fn report_warn(text: impl Into<String>) {
    report(Warning {
        loudness: Loudness::Warn,
        text: text.into(),
    });
}

/// [`report`] of a `Debug` warning.
pub fn report_debug(text: impl Into<String>) {
    report(Warning {
        loudness: Loudness::Debug,
        text: text.into(),
    });
}
