//! `ward plan --format mermaid`.

use std::io::{self, Write};

use crate::plan::{EdgeKind, Plan, ResolvedBody};

fn label(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Writes the DAG as a Mermaid flowchart: `-->` for `needs`, `-.->` for
/// `after`, and `undo` links to compensation steps.
pub fn render(out: &mut dyn Write, v: &Plan) -> io::Result<()> {
    writeln!(out, "flowchart TD")?;
    // Node ids are `s<index>`: step ids may be Mermaid keywords such as `end`.
    for s in &v.steps {
        let kind = match &s.body {
            ResolvedBody::Action(p) => p.action(),
            ResolvedBody::Run(_) => "run",
            ResolvedBody::Cmd(_) => "cmd",
        };
        let when = match s.when {
            crate::model::When::Success => String::new(),
            other => format!(" · when {}", other.as_str()),
        };
        let (open, close) = if s.compensation_only {
            ("([", "])")
        } else {
            ("[", "]")
        };
        writeln!(
            out,
            "  s{}{open}\"{}<br/><small>{kind}{when}</small>\"{close}",
            s.index,
            label(&s.id)
        )?;
    }
    for (from, to, kind) in v.graph.edges() {
        let arrow = match kind {
            EdgeKind::Needs => "-->",
            EdgeKind::After => "-.->|after|",
        };
        writeln!(out, "  s{from} {arrow} s{to}")?;
    }
    for s in &v.steps {
        if let Some(c) = &s.compensate
            && let Some(target) = v.steps.iter().find(|t| &t.id == c)
        {
            writeln!(out, "  s{} -.->|undo| s{}", s.index, target.index)?;
        }
    }
    Ok(())
}
