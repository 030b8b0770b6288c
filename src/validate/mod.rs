//! Checks a parsed playbook as a whole and resolves it for planning:
//! references between steps, templates and action parameters. The DAG
//! (and its cycles) is the plan stage's (`plan::build`).
//!
//! Every check runs even when an earlier one failed, so the user sees all
//! problems at once; follow-on errors (e.g. "unknown step" for a step that
//! was itself broken) are avoided where we can tell. For the same reason
//! [`validate`] always returns what it checked: the plan stage still looks
//! for cycles when a step failed here, and builds no plan.

mod copy_refs;
mod fan_out;
mod preconditions;
mod references;
mod resolve;
mod restore;
mod rotate_order;
pub mod schedule;
mod snapshot_refs;

use std::collections::{BTreeMap, HashSet};

use crate::diagnostic::Diagnostics;
use crate::model::Playbook;
use crate::template::{RunFacts, TemplateContext, Templates};

pub use fan_out::{FanOut, ItemNotice, ItemResolver, ItemWork, Items, item_text};
pub use preconditions::{Check, ResolvedPrecondition};
pub use resolve::{Condition, ResolvedBody, ResolvedConfirm, ResolvedStep};
pub use restore::ResolvedRestore;

/// What validation checked: the playbook with templates rendered. Steps
/// that failed a check are missing from `steps` (the diagnostics say why);
/// [`Validated::is_complete`] tells whether every step passed.
#[derive(Debug)]
pub struct Validated {
    /// The parsed playbook.
    pub playbook: Playbook,
    /// Variables after overrides and templating, secret ones masked
    /// (they are only shown and recorded; steps hold the rendered values).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The `ward.*` facts templates saw.
    pub facts: RunFacts,
    /// Steps in the order written, templates rendered (those that passed).
    pub steps: Vec<ResolvedStep>,
    /// Ids of the steps that only run to compensate another; they stay out
    /// of the DAG.
    pub compensation_only: HashSet<String>,
    /// `preconditions:`, templates rendered (those that passed).
    pub preconditions: Vec<ResolvedPrecondition>,
    /// `restore:`, templates rendered.
    pub restore: Option<ResolvedRestore>,
    /// The text of every secret value (in memory only: never shown or
    /// stored), masked in what steps print.
    pub secret_texts: Vec<String>,
}

impl Validated {
    /// True if every step of the playbook passed (its errors, if any, are
    /// about the playbook as a whole and are in the diagnostics).
    pub fn is_complete(&self) -> bool {
        self.steps.len() == self.playbook.steps.len()
    }
}

/// Validates `playbook` and returns what it checked; the problems found are
/// in `diags`.
pub fn validate(
    playbook: Playbook,
    overrides: &[(String, String)],
    facts: RunFacts,
    diags: &mut Diagnostics,
) -> Validated {
    let compensation_only = references::check(&playbook, diags);
    let templates = Templates::new();
    let ctx = TemplateContext::build(&playbook, overrides, &facts, &templates, diags);
    let steps: Vec<ResolvedStep> = playbook
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            resolve::step(
                i,
                step,
                &playbook,
                &ctx,
                &templates,
                compensation_only.contains(step.id.value.as_str()),
                diags,
            )
        })
        .collect();
    let preconditions = preconditions::resolve_all(&playbook, &ctx, &templates, diags);
    let restore = restore::resolve(&playbook, &ctx, &templates, diags);
    rotate_order::check(&playbook, &steps, diags);
    snapshot_refs::check(&playbook, &steps, diags);
    copy_refs::check(&playbook, &steps, diags);
    // The commands that need the schedule (`ward next`, `ward cron`) read
    // it again from the planned playbook with `schedule::schedule`.
    let _ = schedule::schedule(&playbook, diags);
    // Messages may quote a rendered value (a type error, a template error).
    diags.redact(|text| ctx.redactor.apply(text));
    let compensation_only = compensation_only.into_iter().map(str::to_owned).collect();
    Validated {
        vars: ctx.masked_vars(),
        facts,
        steps,
        compensation_only,
        preconditions,
        restore,
        secret_texts: ctx.redactor.texts().to_vec(),
        playbook,
    }
}

/// The span of `key`'s value in an action step's `with:` as written (the
/// step's `action:` when the key is not there), for errors about a
/// reference from one step to another.
fn with_value_span(playbook: &Playbook, step: &ResolvedStep, key: &str) -> crate::source::Span {
    playbook
        .steps
        .get(step.index)
        .and_then(|s| match &s.body {
            crate::model::StepBody::Action { with, anchor, .. } => Some(
                with.as_ref()
                    .and_then(|w| w.as_map())
                    .and_then(|m| m.iter().find(|e| e.key.as_str() == Some(key)))
                    .map_or(*anchor, |e| e.value.span),
            ),
            _ => None,
        })
        .unwrap_or(step.span)
}
