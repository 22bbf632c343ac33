//! A box's terminal output, as the screen showed it: the stream an agent
//! wrote to its terminal (cursor moves, colours, redraws, queries to the
//! terminal) played into a terminal emulator (`vt100`) here, and only the
//! text its cells hold comes out. Nothing of the stream reaches the user's
//! terminal: a query in it would be answered by that terminal and typed
//! into the user's prompt; colours and moves would be soup in a pipe.

use std::io::Write;

/// The emulated screen is this tall: what an agent drew for a terminal of
/// any height stays on it (a tall screen never scrolls what a short one
/// would have pushed into its scrollback), and as much again of scrollback
/// is kept beneath it. `vt100` shows scrollback only a screen at a time.
const ROWS: u16 = 500;

/// Columns when the reader's own width is not known.
pub const DEFAULT_COLS: u16 = 160;

pub struct Screen {
    parser: vt100::Parser,
}

impl Screen {
    /// A screen `cols` wide (the agent's own lines are wrapped at its
    /// terminal's width; a narrower one would wrap them again).
    pub fn new(cols: u16) -> Screen {
        Screen {
            parser: vt100::Parser::new(ROWS, cols.clamp(20, 1000), usize::from(ROWS)),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
    }

    /// The text, line by line: the scrollback kept, then the screen; blank
    /// lines at both ends dropped, each line made printable (a cell may
    /// hold a bidirectional override).
    pub fn lines(&mut self) -> Vec<String> {
        let width = self.parser.screen().size().1;
        // Offsets past the screen's height are not shown by `vt100`.
        self.parser.set_scrollback(usize::from(ROWS));
        let kept = self.parser.screen().scrollback();
        let rows = |screen: &vt100::Screen, n: usize| -> Vec<(String, bool)> {
            screen
                .rows(0, width)
                .take(n)
                .enumerate()
                .map(|(i, text)| (text, screen.row_wrapped(i as u16)))
                .collect()
        };
        let mut cells = rows(self.parser.screen(), kept);
        self.parser.set_scrollback(0);
        cells.extend(rows(self.parser.screen(), usize::from(ROWS)));
        // A line longer than the screen is wide is one line again.
        let mut out: Vec<String> = Vec::new();
        let mut joining = false;
        for (text, wrapped) in cells {
            match out.last_mut() {
                Some(last) if joining => last.push_str(&text),
                _ => out.push(text),
            }
            joining = wrapped;
        }
        let last = out.iter().rposition(|l| !l.trim().is_empty());
        out.truncate(last.map_or(0, |i| i + 1));
        let first = out.iter().position(|l| !l.trim().is_empty()).unwrap_or(0);
        out.drain(..first);
        out.into_iter()
            .map(|l| super::printable(l.trim_end()))
            .collect()
    }
}

/// A sink for a stream of output that plays it into a [`Screen`].
impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `bytes` rendered: [`Screen::lines`] of a screen `cols` wide.
pub fn render(bytes: &[u8], cols: u16) -> Vec<String> {
    let mut s = Screen::new(cols);
    s.feed(bytes);
    s.lines()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn a_redrawn_line_shows_once_and_queries_and_colours_are_gone() {
        let stream = b"\x1b[31mWelcome\x1b[39m\r\n\x1b]11;?\x07\x1b[c\x1b[>0q\
            working...\r\x1b[Kdone\r\n\x1b[3Gindented";
        assert_eq!(render(stream, 80), vec!["Welcome", "done", "  indented"]);
    }

    #[test]
    fn long_output_keeps_its_newest_lines_in_order() {
        let mut stream = Vec::new();
        for n in 0..2500 {
            stream.extend_from_slice(format!("line {n}\r\n").as_bytes());
        }
        let lines = render(&stream, 80);
        assert_eq!(lines.last().unwrap(), "line 2499");
        let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
        assert_eq!(lines.len(), 2500 - first);
        assert!(lines.len() >= 900, "{}", lines.len());
    }

    #[test]
    fn a_line_wider_than_the_screen_stays_one_line() {
        let long = "x".repeat(50);
        assert_eq!(
            render(format!("{long}\r\nnext").as_bytes(), 20),
            vec![long.as_str(), "next"]
        );
    }

    #[test]
    fn bidi_overrides_in_cells_are_shown_escaped() {
        assert_eq!(render("a\u{202e}b".as_bytes(), 80), vec!["a\\u{202e}b"]);
    }
}
