//! `ward plan --format dot` (Graphviz).

use std::io::{self, Write};

use crate::plan::{EdgeKind, Plan, ResolvedBody};

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Writes the DAG as a Graphviz digraph: solid edges for `needs`, dashed for
/// `after`, dotted boxes for compensation steps.
pub fn render(out: &mut dyn Write, v: &Plan) -> io::Result<()> {
    writeln!(out, "digraph {} {{", quote(&v.playbook.name.value))?;
    writeln!(out, "  rankdir=TB;")?;
    writeln!(out, "  node [shape=box, fontname=\"monospace\"];")?;
    for s in &v.steps {
        let kind = match &s.body {
            ResolvedBody::Action(p) => p.action(),
            ResolvedBody::Run(_) => "run",
            ResolvedBody::Cmd(_) => "cmd",
        };
        let mut attrs = format!("label=\"{}\\n{kind}\"", escape(&s.id));
        if s.compensation_only {
            attrs.push_str(", style=dotted");
        } else if s.when != crate::model::When::Success {
            attrs.push_str(&format!(", xlabel={}", quote(s.when.as_str())));
        }
        writeln!(out, "  {} [{attrs}];", quote(&s.id))?;
    }
    for (from, to, kind) in v.graph.edges() {
        let style = match kind {
            EdgeKind::Needs => "",
            EdgeKind::After => " [style=dashed, label=\"after\"]",
        };
        writeln!(
            out,
            "  {} -> {}{style};",
            quote(&v.steps[from].id),
            quote(&v.steps[to].id)
        )?;
    }
    for s in &v.steps {
        if let Some(c) = &s.compensate {
            writeln!(
                out,
                "  {} -> {} [style=dotted, label=\"undo\", constraint=false];",
                quote(&s.id),
                quote(c)
            )?;
        }
    }
    writeln!(out, "}}")
}
