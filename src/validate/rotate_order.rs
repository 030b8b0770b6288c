//! Warns about a `rotate` that no `verify` of its folder runs before.
//!
//! `rotate` counts only verified snapshots. With snapshot -> rotate ->
//! verify (the order people write first), the newest snapshot is never
//! verified when rotate looks, so `keep_last 3` keeps 4 and the log says
//! "kept 0 of 0 verified" until the verify marks catch up. The playbook is
//! still valid (rotation stays safe), hence a warning, not an error.

use std::collections::{HashMap, HashSet};

use super::resolve::{ResolvedBody, ResolvedStep};
use crate::action::{RotateParams, VerifyParams};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Playbook, StepBody};

/// Adds a warning for every `rotate` step whose `needs`/`after` ancestry
/// holds no `verify` of a snapshot in the same folder.
pub(super) fn check(playbook: &Playbook, steps: &[ResolvedStep], diags: &mut Diagnostics) {
    let by_id: HashMap<&str, &ResolvedStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    for step in steps {
        let Some(rotate) = params::<RotateParams>(step) else {
            continue;
        };
        let folder = normalize(&rotate.dir);
        let verified_before = ancestors(step, &by_id).into_iter().any(|a| {
            params::<VerifyParams>(a).is_some_and(|v| parent(&normalize(&v.path)) == folder)
        });
        if verified_before {
            continue;
        }
        let span = playbook
            .steps
            .get(step.index)
            .and_then(|s| match &s.body {
                StepBody::Action { name, .. } => Some(name.span),
                _ => None,
            })
            .unwrap_or(step.span);
        diags.push(
            Diagnostic::warning(
                "rotate-before-verify",
                span,
                format!(
                    "step `{}` rotates {} but no `verify` of a snapshot in that folder runs \
                     before it; rotate counts only verified snapshots, so this run's snapshot \
                     is kept uncounted (`keep_last: 3` keeps 4)",
                    step.id, rotate.dir
                ),
            )
            .with_help(format!(
                "verify the new snapshot first (e.g. `path: {}/latest`) and add that step to \
                 the `needs` of `{}`: snapshot -> verify -> rotate",
                rotate.dir.trim_end_matches('/'),
                step.id
            )),
        );
    }
}

/// The typed parameters of a step, if it runs action `P`.
fn params<P: 'static>(step: &ResolvedStep) -> Option<&P> {
    match &step.body {
        ResolvedBody::Action(p) => p.as_any().downcast_ref::<P>(),
        _ => None,
    }
}

/// Every step `step` waits for, directly or not (`needs` and `after`).
fn ancestors<'a>(
    step: &ResolvedStep,
    by_id: &HashMap<&str, &'a ResolvedStep>,
) -> Vec<&'a ResolvedStep> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    let mut stack: Vec<&str> = step
        .needs
        .iter()
        .chain(&step.after)
        .map(String::as_str)
        .collect();
    while let Some(id) = stack.pop() {
        let Some(found) = by_id.get(id) else { continue };
        if !seen.insert(found.id.as_str()) {
            continue;
        }
        out.push(*found);
        stack.extend(found.needs.iter().chain(&found.after).map(String::as_str));
    }
    out
}

/// A path as written, without empty and `.` components, so that
/// `snaps/`, `./snaps` and `snaps` compare equal.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The folder part of a normalized path (`snaps` for `snaps/latest`).
fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".to_owned(),
        Some((dir, _)) => dir.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compare_as_folders() {
        assert_eq!(normalize("./snaps//"), "snaps");
        assert_eq!(normalize("/srv/b/./snaps/"), "/srv/b/snaps");
        assert_eq!(parent(&normalize("snaps/latest")), "snaps");
        assert_eq!(parent("/latest"), "/");
        assert_eq!(parent("latest"), "");
    }
}
