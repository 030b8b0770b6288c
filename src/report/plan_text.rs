//! `ward plan` for people.

use std::io::{self, Write};

use super::Style;
use crate::model::When;
use crate::plan::{EdgeKind, Plan, ResolvedBody, ResolvedStep};

/// Writes the plan layer by layer, each step with what it will do.
pub fn render(out: &mut dyn Write, v: &Plan, style: Style) -> io::Result<()> {
    let pb = &v.playbook;
    writeln!(
        out,
        "{} {} ({})",
        style.bold("plan"),
        style.bold(&pb.name.value),
        pb.source.path().display()
    )?;
    if let Some(d) = &pb.description {
        writeln!(out, "  {d}")?;
    }
    let normal = v.steps.iter().filter(|s| !s.compensation_only).count();
    let layers = v.graph.layers();
    writeln!(
        out,
        "  {normal} step{} in {} layer{}; at most {} at a time; lock `{}`",
        plural(normal),
        layers.len(),
        plural(layers.len()),
        pb.max_parallel,
        pb.lock_name()
    )?;
    if let Some(max_age) = &pb.max_age {
        writeln!(out, "  max_age {} (`ward check`)", max_age.value)?;
    }
    if !v.preconditions.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{} (checked in order before any step; one failed: the run is skipped, exit 6)",
            style.bold("preconditions")
        )?;
        for p in &v.preconditions {
            writeln!(out, "  - {}", p.check.describe())?;
        }
    }
    for (n, layer) in layers.iter().enumerate() {
        writeln!(out)?;
        let parallel = if layer.len() > 1 {
            " (these may run in parallel)"
        } else {
            ""
        };
        writeln!(out, "{}{parallel}", style.bold(&format!("layer {}", n + 1)))?;
        for &i in layer {
            step(out, v, &v.steps[i], style)?;
        }
    }
    let compensation: Vec<&ResolvedStep> = v.steps.iter().filter(|s| s.compensation_only).collect();
    if !compensation.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{} (run only if the run fails, in reverse order, for steps that succeeded)",
            style.bold("compensation")
        )?;
        for s in compensation {
            step(out, v, s, style)?;
        }
    }
    Ok(())
}

/// A fan-out step's list in one line: how many items (or which file),
/// their ids, how many at once, and which item `does` shows.
fn for_each(fan: &crate::plan::FanOut) -> String {
    let key = fan
        .key
        .as_deref()
        .map(|k| format!(", key `{k}`"))
        .unwrap_or_default();
    let at_once = match &fan.workers {
        Some(tags) if tags.is_empty() => {
            format!("run by `ward worker`s, {} at a time each", fan.max_parallel)
        }
        Some(tags) => format!(
            "run by `ward worker`s tagged {}, {} at a time each",
            tags.join(", "),
            fan.max_parallel
        ),
        None => format!("{} at a time", fan.max_parallel),
    };
    match &fan.items {
        crate::plan::Items::List(items) if items.is_empty() => {
            format!("none: `for_each` is empty, the step will succeed at once{key}")
        }
        crate::plan::Items::List(items) => format!(
            "{} (`for_each`){key}, {at_once}; `does` shows the first, `{}`",
            items.len(),
            crate::plan::item_text(&items[0])
        ),
        // A file or a program's output: items listed when the step starts.
        other => format!(
            "{}, items listed when the step starts{key}; {at_once}; \
             `does` shows the stand-in `item`",
            other.described().unwrap_or_default()
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn step(out: &mut dyn Write, v: &Plan, s: &ResolvedStep, style: Style) -> io::Result<()> {
    let title = match &s.name {
        Some(name) => format!("{} — {name}", s.id),
        None => s.id.clone(),
    };
    let kind = match &s.body {
        ResolvedBody::Action(p) => p.action().to_owned(),
        ResolvedBody::Run(_) => "run".to_owned(),
        ResolvedBody::Cmd(_) => "cmd".to_owned(),
    };
    writeln!(
        out,
        "  {} {}  {}",
        style.dim("●"),
        style.bold(&title),
        style.dim(&format!("[{kind}]"))
    )?;
    // A multi-line `run:` keeps its lines under the field's column.
    let does = s.body.shown().replace('\n', "\n               ");
    field(out, "does", &does)?;
    if let Some(fan) = &s.fan_out {
        // `does` above is rendered for one item: say which, and how many.
        field(out, "items", &for_each(fan))?;
    }
    if let ResolvedBody::Action(p) = &s.body {
        let work_dir = crate::source::playbook_folder(v.playbook.source.path());
        for line in p.probe(work_dir, &v.facts) {
            field(out, "now", &line)?;
        }
    }
    let deps = v.graph.dependencies(s.index);
    let names = |kind: EdgeKind| -> Vec<&str> {
        deps.iter()
            .filter(|(_, k)| *k == kind)
            .map(|(i, _)| v.steps[*i].id.as_str())
            .collect()
    };
    let needs = names(EdgeKind::Needs);
    if !needs.is_empty() {
        field(out, "needs", &needs.join(", "))?;
    }
    let after = names(EdgeKind::After);
    if !after.is_empty() {
        field(
            out,
            "after",
            &format!("{} (whatever their result)", after.join(", ")),
        )?;
    }
    if s.when != When::Success {
        let meaning = match s.when {
            When::Always => "always (also after a failure)",
            When::Failure => "failure (only if the run has failed)",
            When::Success => "success",
        };
        field(out, "when", meaning)?;
    }
    if let Some(c) = &s.condition {
        let outcome = if c.value {
            "true: runs"
        } else {
            "false: will be skipped"
        };
        field(out, "if", &format!("{} → {outcome}", c.expr))?;
    }
    if let Some(c) = &s.confirm {
        field(
            out,
            "confirm",
            &format!("{} (type `{}`; --yes without a terminal)", c.prompt, c.word),
        )?;
    }
    if let Some(path) = s.shown_creates() {
        field(out, "creates", &format!("{path} (skipped if it exists)"))?;
    }
    for (k, val) in s.shown_env() {
        field(out, "env", &format!("{k}={val}"))?;
    }
    let mut limits = Vec::new();
    if let Some(t) = s.timeout {
        limits.push(format!("timeout {t}"));
    }
    if s.retry.attempts > 1 {
        limits.push(format!(
            "{} attempts (wait {}, ×{}, at most {})",
            s.retry.attempts, s.retry.delay, s.retry.backoff, s.retry.max_delay
        ));
    }
    if s.keep_children {
        limits.push("keeps what it starts in the background".to_owned());
    }
    if s.ok_codes != [0] {
        limits.push(format!(
            "ok exit codes {}",
            s.ok_codes
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !limits.is_empty() {
        field(out, "limits", &limits.join("; "))?;
    }
    if let Some(c) = &s.compensate {
        field(
            out,
            "undo",
            &format!("{c} (if the run fails after this step succeeded)"),
        )?;
    }
    Ok(())
}

fn field(out: &mut dyn Write, name: &str, value: &str) -> io::Result<()> {
    writeln!(out, "      {name:<8} {value}")
}
