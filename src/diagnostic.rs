//! Problems found in a playbook, each tied to a place in the file.
//!
//! Validation collects every [`Diagnostic`] it can find instead of stopping at
//! the first; `report::diagnostics` renders them for people or as JSON.

use crate::source::Span;
use serde::Serialize;

/// How serious a diagnostic is. Errors make a playbook invalid (exit 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; the playbook is still valid.
    Warning,
    /// The playbook cannot be planned or run.
    Error,
}

/// One problem with a place, a message and, where we can, what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable, machine-readable kind such as `unknown-key` or `cycle`.
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where it is; unknown spans (line 0) have no place in the file.
    #[serde(skip)]
    pub span: Span,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Further places that explain the problem (e.g. the first definition of a duplicate).
    #[serde(skip)]
    pub notes: Vec<(Span, String)>,
    /// The source line is not shown (it holds a secret written where none
    /// may be): only its place.
    #[serde(skip)]
    pub hide_source: bool,
}

impl Diagnostic {
    /// A new error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            help: None,
            notes: Vec::new(),
            hide_source: false,
        }
    }

    /// A new warning at `span`.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Adds advice on what to do.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Shows the place but not the source line, which holds a secret.
    pub fn hiding_source(mut self) -> Diagnostic {
        self.hide_source = true;
        self
    }

    /// Adds advice only when there is some.
    pub fn with_help_opt(mut self, help: Option<String>) -> Diagnostic {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Points at a second place that explains the problem.
    pub fn with_note(mut self, span: Span, note: impl Into<String>) -> Diagnostic {
        self.notes.push((span, note.into()));
        self
    }

    /// True for errors (as opposed to warnings).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// An ordered collection of diagnostics for one file.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    // Counted as they come: validation asks after every step, and a scan
    // each time would be quadratic in a playbook with thousands of errors.
    errors: usize,
}

impl Diagnostics {
    /// Records one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.errors += usize::from(d.is_error());
        self.items.push(d);
    }

    /// Records several diagnostics.
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d);
        }
    }

    /// True if any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.errors
    }

    /// The diagnostics sorted by position (stable for equal positions).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| d.span.start);
        self.items
    }

    /// Rewrites the text of every diagnostic (messages may quote a value
    /// that must not be shown, such as a secret).
    pub fn redact(&mut self, f: impl Fn(&str) -> String) {
        for d in &mut self.items {
            d.message = f(&d.message);
            if let Some(h) = &d.help {
                d.help = Some(f(h));
            }
            for (_, n) in &mut d.notes {
                *n = f(n);
            }
        }
    }

    /// The diagnostics recorded so far, in recording order.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }
}

/// How many diagnostics of one code are shown before the rest are counted
/// instead: 20,000 unknown ids must not print 20,000 messages.
pub const SHOWN_PER_CODE: usize = 20;

/// Diagnostics of one code (and severity) that were not shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Omitted {
    /// Their code.
    pub code: &'static str,
    /// Errors or warnings.
    pub severity: Severity,
    /// How many were left out.
    pub count: usize,
}

/// The first [`SHOWN_PER_CODE`] diagnostics of each code, in order, and how
/// many of each code were left out.
pub fn capped(diags: &[Diagnostic]) -> (Vec<&Diagnostic>, Vec<Omitted>) {
    let mut seen: std::collections::HashMap<(&'static str, Severity), usize> =
        std::collections::HashMap::new();
    let mut shown = Vec::new();
    let mut omitted: Vec<Omitted> = Vec::new();
    for d in diags {
        let n = seen.entry((d.code, d.severity)).or_insert(0);
        *n += 1;
        if *n <= SHOWN_PER_CODE {
            shown.push(d);
        } else if let Some(o) = omitted
            .iter_mut()
            .find(|o| o.code == d.code && o.severity == d.severity)
        {
            o.count += 1;
        } else {
            omitted.push(Omitted {
                code: d.code,
                severity: d.severity,
                count: 1,
            });
        }
    }
    (shown, omitted)
}

/// Most name comparisons one check spends on "did you mean" suggestions;
/// past that, a flood of unknown names gets no suggestions (each one costs
/// a comparison with every candidate).
pub const SUGGESTION_BUDGET: usize = 200_000;

/// "did you mean `x`?" for a misspelt name, if one of `candidates` is close.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let wrong_lower = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&wrong_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
