//! Checks that the `snapshot:` of every `pg.dump` names a `pg.snapshot`
//! step that the dump needs (directly or through steps it needs): only
//! then is the point held when the dump starts, and taken in the same run.
//! A point serves one dump (the dump releases it), so two may not share one.

use std::collections::{HashMap, HashSet};

use super::resolve::{ResolvedBody, ResolvedStep};
use crate::action::{PgDumpParams, PgSnapshot};
use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::Playbook;

/// Adds an error for every `pg.dump` whose `snapshot:` is not a
/// `pg.snapshot` step among its (transitive) `needs`.
pub(super) fn check(playbook: &Playbook, steps: &[ResolvedStep], diags: &mut Diagnostics) {
    let by_id: HashMap<&str, &ResolvedStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let snapshot_steps = || {
        steps
            .iter()
            .filter(|s| action_of(s) == Some(<PgSnapshot as crate::action::Action>::NAME))
            .map(|s| s.id.as_str())
    };
    let mut dumped_by: HashMap<&str, &str> = HashMap::new();
    for step in steps {
        let ResolvedBody::Action(params) = &step.body else {
            continue;
        };
        let Some(dump) = params.as_any().downcast_ref::<PgDumpParams>() else {
            continue;
        };
        let target = dump.snapshot.as_str();
        // Point at the `snapshot:` value as written.
        let span = super::with_value_span(playbook, step, "snapshot");
        let written = playbook.steps.iter().any(|s| s.id.value == target);
        let problem = match by_id.get(target) {
            // A step that is there but failed to resolve has its own error.
            None if written => None,
            None => Some((
                format!(
                    "`snapshot: {target}` in step `{}` names no step of this playbook",
                    step.id
                ),
                suggest(target, snapshot_steps()).unwrap_or_else(|| {
                    "name the `pg.snapshot` step that takes the point, e.g. `snapshot: db-point`"
                        .to_owned()
                }),
            )),
            Some(found)
                if action_of(found) != Some(<PgSnapshot as crate::action::Action>::NAME) =>
            {
                let what = match action_of(found) {
                    Some(a) => format!("action `{a}`"),
                    None => format!("a `{}` step", found.body.kind()),
                };
                Some((
                    format!(
                        "`snapshot: {target}` in step `{}` names {what}, not a `pg.snapshot` step",
                        step.id
                    ),
                    "`snapshot` takes the id of the `pg.snapshot` step whose point is dumped"
                        .to_owned(),
                ))
            }
            Some(_) if !needs_transitively(step, target, &by_id) => Some((
                format!(
                    "step `{}` dumps the point of `{target}` but does not need it, so the point \
                     may not be taken (or may have failed) when the dump starts",
                    step.id
                ),
                format!(
                    "add `{target}` to the `needs` of `{}` (directly or through a step it needs)",
                    step.id
                ),
            )),
            Some(_) => dumped_by.insert(target, step.id.as_str()).map(|first| {
                (
                    format!(
                        "steps `{first}` and `{}` both dump the point of `{target}`; the first \
                         dump to succeed releases it",
                        step.id
                    ),
                    "a point serves one `pg.dump`: give the second dump a `pg.snapshot` step of \
                     its own"
                        .to_owned(),
                )
            }),
        };
        if let Some((message, help)) = problem {
            diags.push(Diagnostic::error("snapshot-reference", span, message).with_help(help));
        }
    }
}

fn action_of(step: &ResolvedStep) -> Option<&'static str> {
    match &step.body {
        ResolvedBody::Action(p) => Some(p.action()),
        _ => None,
    }
}

/// True if `step` needs `target`, directly or through steps it needs
/// (`after` does not count: it runs whatever their result).
fn needs_transitively(
    step: &ResolvedStep,
    target: &str,
    by_id: &HashMap<&str, &ResolvedStep>,
) -> bool {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = step.needs.iter().map(String::as_str).collect();
    while let Some(id) = stack.pop() {
        if id == target {
            return true;
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some(s) = by_id.get(id) {
            stack.extend(s.needs.iter().map(String::as_str));
        }
    }
    false
}
