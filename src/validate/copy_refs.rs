//! Checks the `changed_since:` of every `rsync` step: it names an `rsync`
//! step that copies the same `src` to the same `dest` in the same way, and
//! that runs before it (through `needs` or `after`). Only then does "what
//! changed since that copy started" plus that copy make the whole tree.

use std::collections::{HashMap, HashSet};

use super::resolve::{ResolvedBody, ResolvedStep};
use crate::action::{Action, Rsync, RsyncParams};
use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::Playbook;

/// Adds an error for every `changed_since` that does not name an earlier
/// copy of the same tree.
pub(super) fn check(playbook: &Playbook, steps: &[ResolvedStep], diags: &mut Diagnostics) {
    let by_id: HashMap<&str, &ResolvedStep> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let rsync_steps = || {
        steps
            .iter()
            .filter(|s| rsync(s).is_some())
            .map(|s| s.id.as_str())
    };
    for step in steps {
        let Some(params) = rsync(step) else {
            continue;
        };
        let Some(target) = params.changed_since.as_deref() else {
            continue;
        };
        let written = playbook.steps.iter().any(|s| s.id.value == target);
        let problem = match by_id.get(target) {
            // A step that is there but failed to resolve has its own error.
            None if written => None,
            None => Some((
                format!(
                    "`changed_since: {target}` in step `{}` names no step of this playbook",
                    step.id
                ),
                suggest(target, rsync_steps()).unwrap_or_else(|| {
                    "name the `rsync` step of the warm pass, e.g. `changed_since: warm-copy`"
                        .to_owned()
                }),
            )),
            Some(found) => match rsync(found) {
                None => Some((
                    format!(
                        "`changed_since: {target}` in step `{}` names a step that is not an \
                         `rsync` step",
                        step.id
                    ),
                    "`changed_since` takes the id of an earlier `rsync` step of the same tree"
                        .to_owned(),
                )),
                Some(_) if found.id == step.id => Some((
                    format!("step `{}` cannot copy what changed since itself", step.id),
                    "name the earlier `rsync` step of the warm pass".to_owned(),
                )),
                Some(earlier) if !same_copy(params, earlier) => Some((
                    format!(
                        "`changed_since: {target}` in step `{}` names a copy of another tree: \
                         `{target}` copies {} -> {}{}, this step {} -> {}{}",
                        step.id,
                        earlier.src,
                        earlier.dest,
                        how(earlier),
                        params.src,
                        params.dest,
                        how(params)
                    ),
                    "give both steps the same `src`, `dest`, `mode`, `filters`, `delete`, \
                     `hard_links` (the earlier one may have `hard_links: false`), `args` and \
                     `program`: what changed since a copy completes only that copy"
                        .to_owned(),
                )),
                Some(_) if !runs_before(target, step, &by_id) => Some((
                    format!(
                        "step `{}` copies what changed since `{target}` but does not run after it",
                        step.id
                    ),
                    format!(
                        "add `{target}` to the `after` of `{}` (or of a step it needs); with \
                         `after` a failed warm pass makes this step copy everything",
                        step.id
                    ),
                )),
                Some(_) => None,
            },
        };
        if let Some((message, help)) = problem {
            let span = super::with_value_span(playbook, step, "changed_since");
            diags.push(Diagnostic::error("copy-reference", span, message).with_help(help));
        }
    }
}

fn rsync(step: &ResolvedStep) -> Option<&RsyncParams> {
    match &step.body {
        ResolvedBody::Action(p) if p.action() == Rsync::NAME => {
            p.as_any().downcast_ref::<RsyncParams>()
        }
        _ => None,
    }
}

fn same_copy(a: &RsyncParams, b: &RsyncParams) -> bool {
    let trim = |s: &str| s.trim_end_matches('/').to_owned();
    trim(&a.src) == trim(&b.src)
        && trim(&a.dest) == trim(&b.dest)
        && a.filter_rules() == b.filter_rules()
        && a.delete == b.delete
        // A warm pass without hard links is the same copy: the later pass
        // lists every file with more than one name and links them.
        && (a.hard_links == b.hard_links || (a.hard_links && !b.hard_links))
        && a.args == b.args
        && a.program == b.program
}

/// How a copy differs beyond its ends, for the message.
fn how(p: &RsyncParams) -> String {
    let mut out = String::new();
    let rules = p.filter_rules();
    if !rules.is_empty() {
        out.push_str(&format!(" (filters {})", rules.join("; ")));
    }
    if !p.delete {
        out.push_str(" (no delete)");
    }
    if !p.hard_links {
        out.push_str(" (no hard links)");
    }
    if !p.args.is_empty() {
        out.push_str(&format!(" (args {})", p.args.join(" ")));
    }
    if let Some(program) = &p.program {
        out.push_str(&format!(" (program {program})"));
    }
    out
}

/// True if `target` runs before `step`: reached from it through `needs`
/// and `after`, directly or through other steps.
fn runs_before(target: &str, step: &ResolvedStep, by_id: &HashMap<&str, &ResolvedStep>) -> bool {
    fn earlier(s: &ResolvedStep) -> impl Iterator<Item = &str> {
        s.needs.iter().chain(&s.after).map(String::as_str)
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = earlier(step).collect();
    while let Some(id) = stack.pop() {
        if id == target {
            return true;
        }
        if seen.insert(id)
            && let Some(s) = by_id.get(id)
        {
            stack.extend(earlier(s));
        }
    }
    false
}
