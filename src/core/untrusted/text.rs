//! Strings that came from a box, a repository or the network, on their way
//! to a terminal (or into JSON a terminal may print): nothing in them may
//! drive the terminal. C0 and C1 controls, DEL and the Unicode bidirectional
//! overrides and isolates (which reorder what the user reads) are shown
//! escaped (`\x1b`, `\u{202e}`); everything else is kept as it is.

use std::borrow::Cow;

/// Whether `c` must never reach a terminal raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080..=U+009F)
        || matches!(c,
            '\u{200e}' | '\u{200f}'             // LRM, RLM
            | '\u{202a}'..='\u{202e}'           // LRE RLE PDF LRO RLO
            | '\u{2066}'..='\u{2069}'           // LRI RLI FSI PDI
            | '\u{061c}'                        // ALM
        )
}

/// `text` made printable: each unsafe character shown as an escape
/// (`\x1b`, `\u{9b}`, `\u{202e}`), a backslash kept as it is.
pub fn printable(text: &str) -> String {
    printable_cow(text).into_owned()
}

/// [`printable`] without a copy when nothing needs escaping (the common
/// case, on paths that print many rows).
pub fn printable_cow(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// Bytes of unknown encoding (a file, a request line) made printable: what
/// is not UTF-8 is replaced, then [`printable`] applies.
pub fn printable_bytes(raw: &[u8]) -> String {
    printable(&String::from_utf8_lossy(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_shown_escaped() {
        assert_eq!(
            printable("a\x1b]0;pwned\x07\nb"),
            "a\\x1b]0;pwned\\x07\\x0ab"
        );
        assert_eq!(printable("x\u{9b}2J"), "x\\u{9b}2J", "C1 CSI");
        assert_eq!(printable("\x7f"), "\\x7f", "DEL");
        assert_eq!(printable("main\u{202e}txt.exe"), "main\\u{202e}txt.exe");
        assert_eq!(printable("\u{2066}a\u{2069}"), "\\u{2066}a\\u{2069}");
    }

    #[test]
    fn ordinary_text_is_kept_untouched() {
        assert_eq!(printable("npm ci ü 日本 \\n"), "npm ci ü 日本 \\n");
        assert!(matches!(printable_cow("plain"), Cow::Borrowed(_)));
        assert_eq!(printable_bytes(b"a\xffb\x1b"), "a\u{fffd}b\\x1b");
    }
}
