//! The playbook as ward understands it, after parsing and before planning.
//!
//! Every value the user wrote keeps its [`Span`](crate::source::Span) so that
//! later stages (validation, templating, planning) can point back at it.

mod document;
mod duration;
mod history;
pub mod notify;
mod playbook;
mod precondition;
pub mod rehearse;
mod restore;
mod retry;
mod spanned;
mod step;
mod when;

pub use document::{DefaultsDoc, PlaybookDoc, StepDoc};
pub use duration::{Duration, DurationError};
pub use history::History;
pub use notify::Notify;
pub use playbook::{Defaults, NO_SPAN, Overlap, Playbook, Var};
pub use precondition::{ByteSize, MinFree, Precondition, PreconditionKind};
pub use restore::{GUARD_NAMES, Guards, NoServer, PostgresGuard, Restore, RestoreSpec};
pub use retry::RetryPolicy;
pub use spanned::Spanned;
pub use step::{
    Confirm, ForEach, ItemEmail, ItemEnd, ItemSource, MaxFailed, OnItem, Step, StepBody,
};
pub use when::When;

/// True for names usable as template variables: `[A-Za-z_][A-Za-z0-9_]*`.
/// Here, below both the parser that checks var names and the templates that
/// check names in `--var`, so neither imports the other.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
