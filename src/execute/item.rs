//! One item of a `for_each` step, started and waited for: the same for the
//! run's own ward (`scheduler/fan_out.rs`) and for a `ward worker`
//! (`worker.rs`), so that an item runs alike wherever it is claimed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::action_run::{start_action, wait_action};
use super::orphans;
use super::process::{Attempt, AttemptResult, Cancel, spawn_attempt, wait_attempt};
use super::scheduler::{Cleanup, after_attempt, flush_paths, keeps_children};
use crate::plan::{ItemWork, ResolvedBody, ResolvedStep};
use crate::template::RunFacts;

/// What an item's attempt is made from.
pub struct ItemRun<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The playbook's `name:`.
    pub playbook: &'a str,
    /// The step and its index in the plan.
    pub step: &'a ResolvedStep,
    pub index: usize,
    /// The step's attempt (the run's ward's), which the item's attempt id
    /// extends.
    pub step_attempt: u32,
    /// The item's place (from 0), key and attempt.
    pub position: usize,
    pub key: &'a str,
    pub attempt: u32,
    /// The step rendered for the item.
    pub work: &'a ItemWork,
    /// Its log.
    pub log: &'a Path,
    /// The playbook's folder.
    pub cwd: &'a Path,
    /// Wait between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Started shielded from signals to ward's group (finalizers, or after
    /// a first stop signal; see `process::Attempt`).
    pub shield: bool,
    /// The run's secrets, masked in its output.
    pub mask: Option<Arc<crate::process::Mask>>,
}

impl ItemRun<'_> {
    /// The attempt: the step's `WARD_*` variables, an attempt id of the
    /// item's own (so that what it leaves running is told apart from its
    /// siblings), `WARD_ITEM_KEY`, then the step's `env:` rendered for it.
    pub fn attempt(&self, echo: Option<mpsc::UnboundedSender<(usize, String)>>) -> Attempt {
        let argv = argv_of(&self.work.body);
        let step = &self.step.id;
        let attempt_id = item_attempt_id(
            self.run_id,
            step,
            self.step_attempt,
            self.position,
            self.attempt,
        );
        let mut env = ward_env(
            self.run_id,
            self.playbook,
            step,
            self.step_attempt,
            attempt_id,
        );
        env.push(("WARD_ITEM_KEY".to_owned(), self.key.to_owned()));
        env.extend(self.work.env.iter().cloned());
        Attempt {
            step: step.clone(),
            index: self.index,
            run_id: self.run_id.to_owned(),
            argv,
            env,
            cwd: self.cwd.to_path_buf(),
            log_path: self.log.to_path_buf(),
            timeout: self.step.timeout.map(|t| t.std()),
            kill_grace: self.kill_grace,
            shield_from_group_signals: self.shield,
            echo,
            mask: self.mask.clone(),
        }
    }
}

/// The `WARD_*` variables every attempt of a step gets (an item's too),
/// with its attempt id (`orphans::ATTEMPT_VAR`), which finds what it left
/// running.
pub fn ward_env(
    run_id: &str,
    playbook: &str,
    step: &str,
    attempt: u32,
    attempt_id: String,
) -> Vec<(String, String)> {
    vec![
        ("WARD_RUN_ID".to_owned(), run_id.to_owned()),
        ("WARD_STEP".to_owned(), step.to_owned()),
        ("WARD_PLAYBOOK".to_owned(), playbook.to_owned()),
        ("WARD_ATTEMPT".to_owned(), attempt.to_string()),
        (orphans::ATTEMPT_VAR.to_owned(), attempt_id),
    ]
}

/// The attempt id of an item's attempt: its step attempt's, extended, so
/// that what it leaves running is told apart from its siblings'.
pub fn item_attempt_id(
    run_id: &str,
    step: &str,
    step_attempt: u32,
    position: usize,
    attempt: u32,
) -> String {
    format!(
        "{}/item-{}.{attempt}",
        orphans::attempt_id(run_id, step, step_attempt),
        position + 1
    )
}

/// The program an attempt of `body` starts: `run:` through bash with
/// errexit, nounset and pipefail; `cmd:` as written; none for an action,
/// which starts its own programs (`ActionCtx::spawn`).
pub fn argv_of(body: &ResolvedBody) -> Vec<String> {
    match body {
        ResolvedBody::Run(line) => [
            "bash", "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c", line,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ResolvedBody::Cmd(argv) => argv.clone(),
        ResolvedBody::Action(_) => Vec::new(),
    }
}

/// What an action item needs besides its attempt.
pub struct ActionEnv {
    pub facts: RunFacts,
    pub playbook_hash: String,
    pub copies_dir: Option<PathBuf>,
}

/// An item's attempt, started now: the future waits for its end, stops
/// what it left running, and flushes an action's unflushed output.
pub fn start_item(
    step: &ResolvedStep,
    spec: Attempt,
    work: &ItemWork,
    env: ActionEnv,
    cancel: watch::Receiver<Cancel>,
) -> Pin<Box<dyn Future<Output = AttemptResult> + Send>> {
    let cleanup = (!keeps_children(step)).then(|| Cleanup {
        attempt_id: spec
            .env
            .iter()
            .find(|(k, _)| k == orphans::ATTEMPT_VAR)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        grace: spec.kill_grace,
    });
    if let ResolvedBody::Action(params) = &work.body {
        let (mut ctx, cell) = crate::action::ActionCtx::new(
            spec,
            env.facts,
            env.playbook_hash,
            step.param_vars.clone(),
        );
        ctx.copies_dir = env.copies_dir;
        let started = start_action(params.clone(), ctx, cell);
        let timeout = step.timeout.map(|t| t.std());
        return Box::pin(async move {
            let result = wait_action(started, timeout, cancel.clone()).await;
            let result = after_attempt(result, cleanup, &cancel).await;
            flushed_item(result).await
        });
    }
    let started = spawn_attempt(&spec);
    Box::pin(async move {
        let result = wait_attempt(started, spec, cancel.clone()).await;
        after_attempt(result, cleanup, &cancel).await
    })
}

/// An item's output that an action left unflushed (a local `rsync`) is
/// flushed before the item's success is recorded: a step defers that flush
/// and records it (recovery rule 6), but an item has no such record, so a
/// succeeded item is one whose output is on disk. A flush that fails
/// fails the item.
async fn flushed_item(mut result: AttemptResult) -> AttemptResult {
    if result.unflushed.is_empty() {
        return result;
    }
    let paths = std::mem::take(&mut result.unflushed);
    let flushed = tokio::task::spawn_blocking(move || flush_paths(&paths)).await;
    let problem = match flushed {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("the flush stopped unexpectedly: {e}")),
    };
    if let Some(problem) = problem {
        result.end = result.end.failed_after(format!(
            "its output could not be written to disk: {problem}"
        ));
    }
    result
}
