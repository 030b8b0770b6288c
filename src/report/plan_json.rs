//! `ward plan --format json`.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::shown_env_value;
use crate::validate::{ResolvedBody, ResolvedStep, Validated};

/// The plan as a JSON value (also used by other renderers' tests).
pub fn plan_value(v: &Validated) -> Value {
    let layer_of = |index: usize| {
        v.graph
            .layers()
            .iter()
            .position(|l| l.contains(&index))
            .map(|l| l + 1)
    };
    let layers: Vec<Vec<&str>> = v
        .graph
        .layers()
        .iter()
        .map(|l| l.iter().map(|i| v.steps[*i].id.as_str()).collect())
        .collect();
    let steps: Vec<Value> = v
        .steps
        .iter()
        .map(|s| step_value(s, layer_of(s.index)))
        .collect();
    json!({
        "playbook": v.playbook.name.value,
        "file": v.playbook.source.path().display().to_string(),
        "description": v.playbook.description,
        "max_parallel": v.playbook.max_parallel,
        "lock": v.playbook.lock_name(),
        "vars": v.vars,
        "ward": v.facts,
        "layers": layers,
        "steps": steps,
    })
}

fn step_value(s: &ResolvedStep, layer: Option<usize>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id));
    if let Some(n) = &s.name {
        m.insert("name".into(), json!(n));
    }
    m.insert("layer".into(), json!(layer));
    m.insert("kind".into(), json!(s.body.kind()));
    match &s.body {
        ResolvedBody::Action(p) => {
            m.insert("action".into(), json!(p.action()));
            m.insert("summary".into(), json!(p.describe()));
            m.insert("params".into(), p.to_json());
        }
        ResolvedBody::Run(line) => {
            m.insert("run".into(), json!(line));
        }
        ResolvedBody::Cmd(argv) => {
            m.insert("cmd".into(), json!(argv));
        }
    }
    m.insert("needs".into(), json!(s.needs));
    m.insert("after".into(), json!(s.after));
    m.insert("when".into(), json!(s.when.as_str()));
    if let Some(c) = &s.condition {
        m.insert("if".into(), json!({"expr": c.expr, "value": c.value}));
    }
    let env: Map<String, Value> = s
        .env
        .iter()
        .map(|(k, v)| (k.clone(), json!(shown_env_value(k, v))))
        .collect();
    m.insert("env".into(), Value::Object(env));
    m.insert("timeout".into(), json!(s.timeout.map(|t| t.to_string())));
    m.insert("retry".into(), json!(s.retry));
    m.insert("compensate".into(), json!(s.compensate));
    m.insert("creates".into(), json!(s.creates));
    m.insert("ok_codes".into(), json!(s.ok_codes));
    m.insert("compensation_only".into(), json!(s.compensation_only));
    Value::Object(m)
}

/// Writes the plan as pretty JSON.
pub fn render(out: &mut dyn Write, v: &Validated) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &plan_value(v))?;
    writeln!(out)
}
