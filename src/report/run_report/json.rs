//! The report as JSON: `ward status --json`'s document (times RFC 3339,
//! durations `*_ms`) with what a report adds: each step's name, action and
//! summary, the variables, the events and the timeline (docs/cli.md,
//! "`ward report --format json`").

use serde_json::{Value, json};

use super::RunReport;
use crate::report::{json_time, status_json};

/// The report as a JSON value.
pub fn render(r: &RunReport) -> serde_json::Result<Value> {
    let records: Vec<_> = r.steps.iter().map(|s| s.record.clone()).collect();
    let attempts: Vec<_> = r.steps.iter().flat_map(|s| s.attempts.clone()).collect();
    // The items were counted when the report was built (`with_items`).
    let mut v = status_json(&r.run, &records, &attempts, &[], None)?;
    if let Some(steps) = v["steps"].as_array_mut() {
        for (step, s) in steps.iter_mut().zip(&r.steps) {
            step["name"] = json!(s.definition.name);
            step["action"] = json!(s.definition.action);
            step["summary"] = json!(s.definition.what);
            step["output_tail"] = json!(s.failure_tail);
            if let Some(items) = &s.items {
                step["items"] = serde_json::to_value(&items.counts)?;
                step["failed_items"] = items
                    .failed
                    .iter()
                    .map(|it| {
                        json!({
                            "key": it.key,
                            "position": it.position,
                            "exit_code": it.exit_code,
                            "attempts": it.attempts,
                            "message": it.message,
                            "log_path": it.log_path,
                            "started_at": json_time(it.started_at),
                            "finished_at": json_time(it.finished_at),
                        })
                    })
                    .collect();
            }
        }
    }
    v["vars"] = match &r.vars {
        Ok(vars) => Value::Array(
            vars.iter()
                .map(|x| json!({"name": x.name, "value": x.value, "overridden": x.overridden}))
                .collect(),
        ),
        Err(_) => Value::Null,
    };
    v["events"] = r
        .events
        .iter()
        .map(|e| {
            json!({
                "at": json_time(Some(e.at)),
                "kind": e.kind,
                "step_id": e.step_id,
                "message": e.message,
            })
        })
        .collect();
    let t = &r.timeline;
    v["timeline"] = json!({
        "origin": json_time(Some(t.origin)),
        "span_ms": t.span_ms,
        "lanes": t.lanes,
        "bars": t.bars.iter().map(|b| json!({
            "step_id": b.step_id,
            "attempt": b.attempt,
            "lane": b.lane,
            "start_ms": b.start_ms,
            "end_ms": b.end_ms,
            "outcome": b.outcome,
        })).collect::<Vec<_>>(),
        "downtime": t.downtime.as_ref().map(|d| json!({
            "start_ms": d.start_ms,
            "end_ms": d.end_ms,
            "stop_step": d.stop_step,
            "start_step": d.start_step,
            "closed": d.closed,
        })),
        "resumes_ms": t.resumes,
    });
    v["generated_at"] = json_time(Some(r.generated_at));
    Ok(v)
}
