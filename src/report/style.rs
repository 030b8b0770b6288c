//! Terminal colours, off unless writing to a terminal without `NO_COLOR`.

use std::io::IsTerminal;

/// Whether and how to colour output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour if `stream_is_terminal` and `NO_COLOR` is unset.
    pub fn detect(stream_is_terminal: bool) -> Style {
        Style {
            color: stream_is_terminal && std::env::var_os("NO_COLOR").is_none(),
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
