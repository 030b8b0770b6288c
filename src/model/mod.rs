//! The playbook as ward understands it, after parsing and before planning.
//!
//! Every value the user wrote keeps its [`Span`](crate::source::Span) so that
//! later stages (validation, templating, planning) can point back at it.

mod document;
mod duration;
mod playbook;
mod retry;
mod spanned;
mod step;
mod when;

pub use document::{DefaultsDoc, PlaybookDoc, StepDoc};
pub use duration::Duration;
pub use playbook::{Defaults, NO_SPAN, Playbook, Var};
pub use retry::RetryPolicy;
pub use spanned::Spanned;
pub use step::{Step, StepBody};
pub use when::When;
