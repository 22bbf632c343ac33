//! Typing into an instance's agent: its terminal gets a message and the
//! Enter after it as if the user had typed them, whether or not a terminal
//! is attached (the engine keeps the container's input open).

use super::docker::DockerEngine;
use crate::core::error::{Error, Result};
use crate::state::registry::Instance;
use std::time::Duration;

/// Between the text and its Enter: an agent's terminal UI takes both in one
/// read as a paste and waits for another Enter.
const ENTER_GAP: Duration = Duration::from_millis(200);

/// The bytes that type `text` and submit it: one line as it is; several in
/// a bracketed paste (each newline would else submit a line of its own).
/// Control characters other than newline and tab are dropped: an escape in
/// the text could end the paste or drive the agent's terminal UI.
pub fn keystrokes(text: &str) -> Vec<Vec<u8>> {
    let text = text.replace("\r\n", "\n");
    let text: String = text
        .trim_end_matches('\n')
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let body = if text.contains('\n') {
        format!("\x1b[200~{text}\x1b[201~")
    } else {
        text
    };
    vec![body.into_bytes(), b"\r".to_vec()]
}

/// Types `text` and Enter into `inst`'s agent.
pub fn type_message(inst: &Instance, text: &str) -> Result<()> {
    super::reachable(inst)?;
    let Some(container) = inst.container_id.as_deref() else {
        return Err(Error::Invalid(format!(
            "{} runs on the host in the terminal that started it; type there (only a container's input can be reached)",
            inst.id
        )));
    };
    let engine = DockerEngine::connect()?;
    engine.block_on(engine.type_input(container, &keystrokes(text), ENTER_GAP))
}

#[cfg(test)]
mod tests {
    use super::keystrokes;

    #[test]
    fn one_line_is_typed_then_entered_and_several_are_pasted() {
        assert_eq!(
            keystrokes("fix the test\n"),
            vec![b"fix the test".to_vec(), b"\r".to_vec()]
        );
        assert_eq!(
            keystrokes("a\r\nb"),
            vec![b"\x1b[200~a\nb\x1b[201~".to_vec(), b"\r".to_vec()]
        );
        // An escape of the sender's cannot end the paste early.
        assert_eq!(
            keystrokes("a\x1b[201~\nb\x07"),
            vec![b"\x1b[200~a[201~\nb\x1b[201~".to_vec(), b"\r".to_vec()]
        );
    }
}
