//! JSON that a terminal may print (`--json`, JSON lines): serde_json
//! escapes C0 controls and `"`/`\`, but writes C1 controls, DEL and the
//! bidirectional overrides raw; here they are written as `\u` escapes too.
//! The value read back is the same.

use crate::core::error::{Error, Result};

/// Whether `c` is written escaped (beyond what serde_json escapes): what
/// [`super::text`] never lets reach a terminal, C0 aside (serde_json
/// escapes it in strings; outside them it is the layout), and the line and
/// paragraph separators.
fn escaped(c: char) -> bool {
    (c as u32 >= 0x7f && super::text::is_unsafe(c)) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// JSON text from serde_json with those characters escaped. Outside
/// strings JSON holds only ASCII, so each one found is inside a string,
/// where `\uXXXX` means the same character.
pub fn escape(json: String) -> String {
    if !json.chars().any(escaped) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as one line of JSON, safe to print.
pub fn line(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map(escape)
        .map_err(|e| Error::Other(e.to_string()))
}

/// `value` as indented JSON, safe to print.
pub fn pretty(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(escape)
        .map_err(|e| Error::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_del_and_bidi_are_escaped_and_read_back_the_same() {
        let v = serde_json::json!({"h": "x\u{1b}]0;t\u{7}\u{9b}2J\u{7f}\u{202e}exe ü"});
        let text = line(&v).unwrap();
        assert_eq!(
            text,
            r#"{"h":"x\u001b]0;t\u0007\u009b2J\u007f\u202eexe ü"}"#
        );
        assert!(!text.chars().any(|c| c.is_control()));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert_eq!(pretty(&v).unwrap().matches("\\u").count(), 5);
    }
}
