//! Step ids and the references between steps.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Diagnostic, Diagnostics, SUGGESTION_BUDGET, suggest};
use crate::model::{Playbook, Spanned};

/// Checks ids and references; returns the ids of compensation-only steps
/// (those named by some `compensate:`), which run only to undo a step.
pub(super) fn check<'p>(playbook: &'p Playbook, diags: &mut Diagnostics) -> HashSet<&'p str> {
    let mut first: HashMap<&str, &Spanned<String>> = HashMap::new();
    for step in &playbook.steps {
        if let Some(prev) = first.get(step.id.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "duplicate-id",
                    step.id.span,
                    format!("step id `{}` is used twice", step.id.value),
                )
                .with_note(prev.span, "first used here")
                .with_help("give every step a unique `id`"),
            );
        } else {
            first.insert(&step.id.value, &step.id);
        }
    }
    let ids: Vec<&str> = first.keys().copied().collect();
    let compensation_only: HashSet<&str> = playbook
        .steps
        .iter()
        .filter_map(|s| s.compensate.as_ref().map(|c| c.value.as_str()))
        .collect();

    // Each suggestion compares with every id: bounded, so that thousands of
    // unknown names among thousands of steps stay linear.
    let mut budget = SUGGESTION_BUDGET;
    for step in &playbook.steps {
        let id = step.id.value.as_str();
        let refs = step
            .needs
            .iter()
            .map(|r| ("needs", r))
            .chain(step.after.iter().map(|r| ("after", r)))
            .chain(step.compensate.iter().map(|r| ("compensate", r)));
        for (key, target) in refs {
            let name = target.value.as_str();
            if name == id {
                diags.push(Diagnostic::error(
                    "self-reference",
                    target.span,
                    format!("step `{id}` names itself in `{key}`"),
                ));
            } else if !first.contains_key(name) {
                diags.push(
                    Diagnostic::error(
                        "unknown-step",
                        target.span,
                        format!("`{key}` of step `{id}` names unknown step `{name}`"),
                    )
                    .with_help_opt(
                        (budget >= ids.len())
                            .then(|| {
                                budget -= ids.len();
                                suggest(name, ids.iter().copied())
                            })
                            .flatten()
                            .or_else(|| Some("steps are named by their `id`".to_owned())),
                    ),
                );
            } else if key != "compensate" && compensation_only.contains(name) {
                diags.push(
                    Diagnostic::error(
                        "needs-compensation-step",
                        target.span,
                        format!("step `{id}` waits for `{name}`, which only runs as compensation"),
                    )
                    .with_help("a step named in `compensate:` runs only to undo another step; depend on a regular step instead"),
                );
            }
        }
        if compensation_only.contains(id) {
            if let Some(r) = step.needs.first().or(step.after.first()) {
                diags.push(
                    Diagnostic::error(
                        "compensation-ordering",
                        r.span,
                        format!("step `{id}` is a compensation step, so `needs` and `after` do not apply to it"),
                    )
                    .with_help("compensation steps run in reverse order of the steps they undo; remove `needs`/`after`"),
                );
            }
            if let Some(c) = &step.compensate {
                diags.push(Diagnostic::error(
                    "compensation-ordering",
                    c.span,
                    format!("compensation step `{id}` cannot have a `compensate` of its own"),
                ));
            }
        }
    }
    compensation_only
}
