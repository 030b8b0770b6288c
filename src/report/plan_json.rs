//! `ward plan --format json`.
//!
//! Written through borrowed `Serialize` structs rather than a built
//! `serde_json::Value`: a 5,000-step plan then costs no tree of maps.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::model::RetryPolicy;
use crate::plan::{Plan, ResolvedBody, ResolvedStep};
use crate::template::RunFacts;

#[derive(Serialize)]
struct PlanJson<'a> {
    playbook: &'a str,
    file: String,
    description: Option<&'a str>,
    max_parallel: usize,
    lock: &'a str,
    vars: &'a BTreeMap<String, serde_json::Value>,
    ward: &'a RunFacts,
    layers: Vec<Vec<&'a str>>,
    steps: Vec<StepJson<'a>>,
    /// Each precondition in one line (left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    preconditions: Vec<String>,
    /// `max_age` (left out when not set).
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<String>,
}

#[derive(Serialize)]
struct StepJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    layer: Option<usize>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a [String]>,
    needs: &'a [String],
    after: &'a [String],
    when: &'static str,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    condition: Option<ConditionJson<'a>>,
    env: BTreeMap<&'a str, &'a str>,
    timeout: Option<String>,
    retry: &'a RetryPolicy,
    compensate: Option<&'a str>,
    creates: Option<&'a str>,
    ok_codes: &'a [i32],
    compensation_only: bool,
    /// `confirm:`, when the step has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<ConfirmJson<'a>>,
    /// `for_each:`, when the step has one (`run`, `cmd`, `params` above
    /// are rendered for its first item).
    #[serde(skip_serializing_if = "Option::is_none")]
    for_each: Option<ForEachJson<'a>>,
}

#[derive(Serialize)]
struct ForEachJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [serde_json::Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a str>,
    key: Option<&'a str>,
    max_parallel: usize,
    /// Where a query or other source reads the items (`None` for a list or
    /// a `lines:` file, shown above).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// `workers:`: the tags a `ward worker` must carry to run the items.
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<&'a [String]>,
}

#[derive(Serialize)]
struct ConfirmJson<'a> {
    prompt: &'a str,
    word: &'a str,
}

#[derive(Serialize)]
struct ConditionJson<'a> {
    expr: &'a str,
    value: bool,
}

fn step_json(s: &ResolvedStep, layer: Option<usize>) -> StepJson<'_> {
    let (action, summary, params, run, cmd) = match &s.body {
        ResolvedBody::Action(p) => (
            Some(p.action()),
            Some(p.describe()),
            Some(p.to_json()),
            None,
            None,
        ),
        ResolvedBody::Run(line) => (None, None, None, Some(line.as_str()), None),
        ResolvedBody::Cmd(argv) => (None, None, None, None, Some(argv.as_slice())),
    };
    StepJson {
        id: &s.id,
        name: s.name.as_deref(),
        layer,
        kind: s.body.kind(),
        action,
        summary,
        params,
        run,
        cmd,
        needs: &s.needs,
        after: &s.after,
        when: s.when.as_str(),
        condition: s.condition.as_ref().map(|c| ConditionJson {
            expr: &c.expr,
            value: c.value,
        }),
        env: s.shown_env().collect(),
        timeout: s.timeout.map(|t| t.to_string()),
        retry: &s.retry,
        compensate: s.compensate.as_deref(),
        creates: s.shown_creates(),
        ok_codes: &s.ok_codes,
        compensation_only: s.compensation_only,
        confirm: s.confirm.as_ref().map(|c| ConfirmJson {
            prompt: &c.prompt,
            word: &c.word,
        }),
        for_each: s.fan_out.as_ref().map(|f| ForEachJson {
            items: f.list(),
            lines: f.lines(),
            key: f.key.as_deref(),
            max_parallel: f.max_parallel,
            source: (f.list().is_none() && f.lines().is_none())
                .then(|| f.items.described())
                .flatten(),
            workers: f.workers.as_deref(),
        }),
    }
}

/// Writes the plan as pretty JSON.
pub fn render(out: &mut dyn Write, v: &Plan) -> io::Result<()> {
    let layer_of = v.layer_of();
    let plan = PlanJson {
        playbook: &v.playbook.name.value,
        file: v.playbook.source.path().display().to_string(),
        description: v.playbook.description.as_deref(),
        max_parallel: v.playbook.max_parallel,
        lock: v.playbook.lock_name(),
        vars: &v.vars,
        ward: &v.facts,
        layers: v
            .graph
            .layers()
            .iter()
            .map(|l| l.iter().map(|i| v.steps[*i].id.as_str()).collect())
            .collect(),
        steps: v
            .steps
            .iter()
            .map(|s| step_json(s, layer_of[s.index]))
            .collect(),
        preconditions: v.preconditions.iter().map(|p| p.check.describe()).collect(),
        max_age: v.playbook.max_age.as_ref().map(|d| d.value.to_string()),
    };
    serde_json::to_writer_pretty(&mut *out, &plan)?;
    writeln!(out)
}
