//! Source files and positions inside them.
//!
//! Every node the user wrote carries a [`Span`]; diagnostics render it as
//! `file:line:column` with the source line and a caret under the spot.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a source file: 1-based line, 1-based column in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters (not bytes).
    pub col: u32,
}

/// A range in a source file. `end` is exclusive; a span may cover several lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// Where the spanned text starts.
    pub start: Pos,
    /// Where the spanned text ends (exclusive).
    pub end: Pos,
}

impl Span {
    /// A span from 1-based line and column pairs.
    pub fn new(start: Pos, end: Pos) -> Span {
        Span { start, end }
    }

    /// A zero-width span at a single position.
    pub fn point(line: u32, col: u32) -> Span {
        let p = Pos { line, col };
        Span { start: p, end: p }
    }

    /// True for the placeholder span of things that have no place in a file
    /// (for example values given with `--var`).
    pub fn is_unknown(&self) -> bool {
        self.start.line == 0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start.line, self.start.col)
    }
}

/// The folder of a playbook file as its path names it: empty for a bare
/// file name, so that paths joined onto it stay as the user wrote them
/// (plans show them so); `.` for a path with no parent.
pub fn playbook_folder(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// The folder of a playbook file, absolute where it exists: the working
/// directory of its steps and `ward.playbook_dir`. Worked out here only,
/// so that templates and steps never disagree about where "here" is.
pub fn playbook_dir(path: &Path) -> PathBuf {
    let dir = playbook_folder(path);
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The text of one playbook file, with an index of where each line starts.
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps already-read text; `path` is only used for display.
    pub fn new(path: impl Into<PathBuf>, text: String) -> Arc<SourceFile> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Arc::new(SourceFile {
            path: path.into(),
            text,
            line_starts,
        })
    }

    /// The path as the user gave it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The sha256 of the whole text, as hex: what a run records to tell
    /// later whether its playbook file changed.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The text of a 1-based line without its line terminator, if it exists.
    pub fn line(&self, line: u32) -> Option<&str> {
        let idx = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(idx)?;
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |next| next - 1);
        let raw = self.text.get(start..end)?;
        Some(raw.strip_suffix('\r').unwrap_or(raw))
    }

    /// Number of lines in the file.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_has_an_empty_folder_and_the_current_dir() {
        assert_eq!(playbook_folder(Path::new("p.yml")), Path::new(""));
        assert_eq!(playbook_folder(Path::new("a/p.yml")), Path::new("a"));
        let here = std::fs::canonicalize(".").expect("cwd");
        assert_eq!(playbook_dir(Path::new("p.yml")), here);
    }

    #[test]
    fn a_missing_folder_is_kept_as_given() {
        let dir = playbook_dir(Path::new("no/such/folder/p.yml"));
        assert_eq!(dir, Path::new("no/such/folder"));
    }
}
