//! The plan stage: what a run will do, built from a validated playbook.
//!
//! A [`Plan`] is the one value between checking and running: the report
//! prints it, the executor runs it, and a resume compares its
//! [`fingerprint`] with the one recorded when the run started. It holds
//! the resolved steps, the DAG (which step waits for which, in layers that
//! may run in parallel, in a deterministic order) and, for the crash rules
//! in `state::recovery`, each step's part in a held consistent point.

pub mod fingerprint;
mod graph;

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostics;
use crate::model::{Playbook, When};
use crate::state::recovery::{PointRole, StepShape};
use crate::template::{FingerprintKey, RunFacts};
use crate::validate::Validated;

pub use crate::validate::{
    Check, Condition, FanOut, ItemWork, Items, ResolvedBody, ResolvedConfirm, ResolvedPrecondition,
    ResolvedStep, item_text,
};
pub use graph::{EdgeKind, StepGraph};

/// A playbook ready to run: its steps resolved and ordered.
#[derive(Debug)]
pub struct Plan {
    /// The parsed playbook.
    pub playbook: Playbook,
    /// Variables after overrides and templating, secret ones masked
    /// (they are only shown and recorded; steps hold the rendered values).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The `ward.*` facts templates saw.
    pub facts: RunFacts,
    /// Steps in the order written, templates rendered.
    pub steps: Vec<ResolvedStep>,
    /// The DAG over the steps that run normally (not compensation-only ones).
    pub graph: StepGraph,
    /// Each step's part in a held consistent point, in `steps` order.
    points: Vec<PointRole>,
    /// `preconditions:`, checked in order before a run starts.
    pub preconditions: Vec<ResolvedPrecondition>,
    /// `restore:`, templates rendered.
    pub restore: Option<crate::validate::ResolvedRestore>,
    /// The text of every secret value (in memory only: never shown or
    /// stored), masked in what steps print (`process::Mask`).
    pub secret_texts: Vec<String>,
}

impl Plan {
    /// What steps' output is masked with: every secret value and each
    /// step's secret environment values (`None`: there are none).
    pub fn output_mask(&self) -> Option<std::sync::Arc<crate::process::Mask>> {
        let env = self.steps.iter().flat_map(|s| {
            s.env
                .iter()
                .filter(|(k, _)| s.secret_env.contains(k))
                .map(|(_, v)| v.clone())
        });
        // As the redactor: too short a text would garble the output.
        let texts = self
            .secret_texts
            .iter()
            .cloned()
            .chain(env)
            .filter(|t| t.chars().count() >= crate::template::MIN_REDACTED_LEN);
        crate::process::Mask::of(texts)
    }
}

/// Builds the plan of what `validated` checked: the DAG (each cycle is
/// reported into `diags`) and what recovery needs to know of each step.
/// Returns `None` when anything was wrong, here or in an earlier stage, so
/// that nothing is planned from a playbook with errors.
pub fn build(validated: Validated, diags: &mut Diagnostics) -> Option<Plan> {
    // Cycles are looked for even when some step failed validation: the
    // operator sees every problem at once.
    let graph = match StepGraph::build(&validated.playbook.steps, &validated.compensation_only) {
        Ok(g) => Some(g),
        Err(cycles) => {
            diags.extend(cycles);
            None
        }
    };
    if diags.has_errors() || !validated.is_complete() {
        return None;
    }
    let Validated {
        playbook,
        vars,
        facts,
        steps,
        compensation_only: _,
        preconditions,
        restore,
        secret_texts,
    } = validated;
    let points = steps.iter().map(point_role).collect();
    Some(Plan {
        playbook,
        vars,
        facts,
        steps,
        graph: graph?,
        points,
        preconditions,
        restore,
        secret_texts,
    })
}

/// A step's part in a held consistent point (recovery rule 7), from its
/// action's name and parameters: a `pg.snapshot` holds one, a `pg.dump`
/// dumps the one its `snapshot` names.
fn point_role(step: &ResolvedStep) -> PointRole {
    let ResolvedBody::Action(params) = &step.body else {
        return PointRole::None;
    };
    match params.action() {
        "pg.snapshot" if !step.compensation_only => PointRole::Holds,
        "pg.dump" => match params.to_json().get("snapshot") {
            Some(serde_json::Value::String(holder)) => PointRole::Dumps(holder.clone()),
            _ => PointRole::None,
        },
        _ => PointRole::None,
    }
}

impl Plan {
    /// The layer (1-based) of each step, in `steps` order; `None` for the
    /// compensation-only steps, which are outside the DAG.
    pub fn layer_of(&self) -> Vec<Option<usize>> {
        let mut layer_of = vec![None; self.steps.len()];
        for (n, layer) in self.graph.layers().iter().enumerate() {
            for &i in layer {
                layer_of[i] = Some(n + 1);
            }
        }
        layer_of
    }

    /// True if some step has secret values: its fingerprint then needs the
    /// key kept beside the state database.
    pub fn needs_fingerprint_key(&self) -> bool {
        self.steps.iter().any(|s| !s.secret_values().is_empty())
    }

    /// The run's fingerprint in the current version (see [`fingerprint`]),
    /// recorded with the run when it starts.
    pub fn fingerprint(&self, key: Option<&FingerprintKey>) -> fingerprint::Fingerprint {
        fingerprint::Fingerprint::of(self, key)
    }

    /// What the crash rules need to know of each step, as plain data, in
    /// `steps` order.
    pub fn recovery_shape(&self) -> Vec<StepShape> {
        self.steps
            .iter()
            .zip(&self.points)
            .map(|(s, point)| StepShape {
                id: s.id.clone(),
                compensation_only: s.compensation_only,
                finalizer: s.when != When::Success,
                waits_for: self
                    .graph
                    .dependencies(s.index)
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect(),
                waited_by: self.graph.dependents(s.index),
                point: point.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_sees_the_dag_and_the_held_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.yml");
        std::fs::write(
            &path,
            "ward: 1\nname: w\nsteps:\n  \
             - id: stop\n    run: \"true\"\n  \
             - id: point\n    needs: [stop]\n    action: pg.snapshot\n  \
             - id: start\n    after: [point]\n    when: always\n    run: \"true\"\n  \
             - id: dump\n    needs: [point]\n    action: pg.dump\n    with: { dest: d.gz, snapshot: point }\n",
        )
        .expect("write");
        let facts = RunFacts::new(chrono::NaiveDateTime::default(), "r", &path);
        let plan = crate::check_file_with(&path, &[], facts)
            .expect("read")
            .plan
            .expect("valid");
        let shape = plan.recovery_shape();
        let points: Vec<&PointRole> = shape.iter().map(|s| &s.point).collect();
        assert_eq!(
            points,
            [
                &PointRole::None,
                &PointRole::Holds,
                &PointRole::None,
                &PointRole::Dumps("point".into())
            ]
        );
        assert_eq!(shape[1].waits_for, [0]);
        assert_eq!(shape[1].waited_by, [2, 3]);
        assert!(shape[2].finalizer && !shape[3].finalizer);
    }
}
