//! Checks a parsed playbook as a whole and resolves it for planning:
//! references between steps, templates, action parameters and the DAG.
//!
//! Every check runs even when an earlier one failed, so the user sees all
//! problems at once; follow-on errors (e.g. "unknown step" for a step that
//! was itself broken) are avoided where we can tell.

mod copy_refs;
mod references;
mod resolve;
mod rotate_order;
mod snapshot_refs;

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostics;
use crate::model::Playbook;
use crate::plan::StepGraph;
use crate::template::{RunFacts, TemplateContext, Templates};

pub use resolve::{Condition, ResolvedBody, ResolvedStep};

/// A playbook that passed validation, with templates rendered.
#[derive(Debug)]
pub struct Validated {
    /// The parsed playbook.
    pub playbook: Playbook,
    /// Variables after overrides and templating, secret ones masked
    /// (they are only shown and recorded; steps hold the rendered values).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The `ward.*` facts templates saw.
    pub facts: RunFacts,
    /// Steps in the order written, templates rendered.
    pub steps: Vec<ResolvedStep>,
    /// The DAG over the steps that run normally (not compensation-only ones).
    pub graph: StepGraph,
}

/// Validates `playbook`; returns it resolved if there were no errors.
pub fn validate(
    playbook: Playbook,
    overrides: &[(String, String)],
    facts: RunFacts,
    diags: &mut Diagnostics,
) -> Option<Validated> {
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
    rotate_order::check(&playbook, &steps, diags);
    snapshot_refs::check(&playbook, &steps, diags);
    copy_refs::check(&playbook, &steps, diags);
    let graph = match StepGraph::build(&playbook.steps, &compensation_only) {
        Ok(g) => Some(g),
        Err(cycles) => {
            diags.extend(cycles);
            None
        }
    };
    // Messages may quote a rendered value (a type error, a template error).
    diags.redact(|text| ctx.redactor.apply(text));
    if diags.has_errors() || steps.len() != playbook.steps.len() {
        return None;
    }
    Some(Validated {
        vars: ctx.masked_vars(),
        facts,
        steps,
        graph: graph?,
        playbook,
    })
}
