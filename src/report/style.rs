//! Terminal colours, off unless writing to a terminal without `NO_COLOR`.

use std::io::IsTerminal;

/// Whether and how to colour output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour if `stream_is_terminal`, `NO_COLOR` is unset and the
    /// terminal is not `TERM=dumb` (which shows escape codes as text).
    pub fn detect(stream_is_terminal: bool) -> Style {
        Style {
            color: stream_is_terminal && std::env::var_os("NO_COLOR").is_none() && !dumb_terminal(),
        }
    }

    /// Style for standard error.
    pub fn stderr() -> Style {
        Style::detect(std::io::stderr().is_terminal())
    }

    /// Style for standard output.
    pub fn stdout() -> Style {
        Style::detect(std::io::stdout().is_terminal())
    }

    /// No colours.
    pub fn plain() -> Style {
        Style { color: false }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold red.
    pub fn error(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Bold yellow.
    pub fn warning(&self, text: &str) -> String {
        self.paint("1;33", text)
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Blue, for gutters and arrows.
    pub fn dim(&self, text: &str) -> String {
        self.paint("34", text)
    }

    /// Cyan, for help lines.
    pub fn help(&self, text: &str) -> String {
        self.paint("36", text)
    }
}

/// True for `TERM=dumb`: a terminal that cannot move the cursor or colour
/// text, so ward prints plain lines and never redraws.
pub fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

/// Whether standard output is a terminal that ward may redraw lines on
/// (not `TERM=dumb`), and its size (columns, rows; 80x24 when it does not
/// say, as a fresh pseudo-terminal does not).
pub fn live_stdout() -> Option<(usize, usize)> {
    let out = std::io::stdout();
    if !out.is_terminal() || dumb_terminal() {
        return None;
    }
    let size = rustix::termios::tcgetwinsize(&out).ok();
    let cols = size.map_or(0, |s| usize::from(s.ws_col));
    let rows = size.map_or(0, |s| usize::from(s.ws_row));
    Some((
        if cols == 0 { 80 } else { cols },
        if rows == 0 { 24 } else { rows },
    ))
}
