//! `ward pause|unpause|retry RUN_ID ITEM...`: an operator changes single
//! items of a run's `for_each` steps, while the run goes on (from another
//! process) or before a resume.
//!
//! These never take the run lock: the run's ward holds it while it runs.
//! Each is one small transaction on the items (`Change::ItemControl`) that
//! changes an item only if it is still in the state it was seen in, and
//! records an event the run's ward reads a few times a second
//! (docs/design.md, "Fan-out"). The items are read back afterwards, so
//! what is printed is what happened, also when the run's ward started or
//! ended an item in between.

use std::collections::HashMap;

use super::ControlArgs;
use super::inspect::find_run;
use crate::error::{WardError, exit};
use crate::session::{StateSession, block_on};
use crate::state::{Access, Change, ItemControl, ItemRecord, ItemState};

/// Why an item in this state cannot take `control`, and what to do.
fn refusal(control: ItemControl, state: ItemState) -> &'static str {
    match (control, state) {
        (ItemControl::Pause, ItemState::Running) => {
            "it is running; a running item is not stopped (pause it before it starts, or `ward \
             retry` it later if it fails)"
        }
        (_, ItemState::Succeeded) => "it succeeded; a succeeded item never runs again",
        (ItemControl::Pause, _) => "only a pending item can be paused",
        (ItemControl::Unpause, _) => "only a paused item can be unpaused",
        (ItemControl::Retry, ItemState::Running) => "it is running",
        (ItemControl::Retry, _) => "only a failed item is retried",
    }
}

pub(super) fn control(control: ItemControl, args: &ControlArgs) -> Result<i32, WardError> {
    let verb = match control {
        ItemControl::Pause => "paused",
        ItemControl::Unpause => "unpaused",
        ItemControl::Retry => "retried",
    };
    let (run_id, chosen, after) = block_on(async {
        let mut session = StateSession::open(args.state.state.as_deref(), Access::Write).await?;
        let run = find_run(&session, Some(&args.run_id)).await?;
        let items = session
            .store
            .items(&run.id, args.step.as_deref(), None)
            .await?;
        let chosen = choose(&run.id, &items, args)?;
        let at = crate::clock::wall_ms();
        let changes: Vec<Change> = chosen
            .iter()
            .filter(|it| it.state == control.from())
            .map(|it| Change::ItemControl {
                step: it.step_id.clone(),
                key: it.key.clone(),
                control,
                at,
            })
            .collect();
        session.store.apply(&run.id, changes).await?;
        let after = session
            .store
            .items(&run.id, args.step.as_deref(), None)
            .await?;
        Ok::<_, WardError>((run.id, chosen, after))
    })??;
    let now: HashMap<(&str, &str), ItemState> = after
        .iter()
        .map(|it| ((it.step_id.as_str(), it.key.as_str()), it.state))
        .collect();
    let mut refused = 0;
    for it in &chosen {
        let state = now
            .get(&(it.step_id.as_str(), it.key.as_str()))
            .copied()
            .unwrap_or(it.state);
        let name = format!("item `{}` of step `{}`", it.key, it.step_id);
        if it.state == control.from() && state == control.to() {
            println!("{verb} {name}");
        } else if it.state == control.to() {
            println!("{name} is already {}", control.to());
        } else {
            refused += 1;
            eprintln!("not {verb}: {name} is {state}: {}", refusal(control, state));
        }
    }
    if chosen.is_empty() {
        println!("run {run_id} has no failed items");
    }
    match control {
        ItemControl::Pause => {}
        _ if refused < chosen.len() => println!(
            "if the run is going on, its ward starts them while their step still runs; \
             otherwise `ward resume{} {run_id}` runs them",
            args.state
                .state
                .as_ref()
                .map(|p| format!(" --state {}", p.display()))
                .unwrap_or_default()
        ),
        _ => {}
    }
    Ok(if refused > 0 { exit::FAILED } else { exit::OK })
}

/// The items the command line names: each ITEM is a key, unique in the
/// run or in `--step`; `--all-failed` adds every failed one. Unknown or
/// ambiguous names are a usage error (exit 2) and nothing is changed.
fn choose(
    run_id: &str,
    items: &[ItemRecord],
    args: &ControlArgs,
) -> Result<Vec<ItemRecord>, WardError> {
    let mut chosen: Vec<ItemRecord> = Vec::new();
    let mut problems = Vec::new();
    for name in &args.items {
        let found: Vec<&ItemRecord> = items.iter().filter(|it| &it.key == name).collect();
        match found.as_slice() {
            [] => problems.push(match &args.step {
                Some(step) => format!("no item `{name}` in step `{step}` of run {run_id}"),
                None => format!("no item `{name}` in run {run_id}"),
            }),
            [one] => {
                if !chosen
                    .iter()
                    .any(|c| c.step_id == one.step_id && c.key == one.key)
                {
                    chosen.push((*one).clone());
                }
            }
            many => {
                let steps: Vec<String> =
                    many.iter().map(|it| format!("`{}`", it.step_id)).collect();
                problems.push(format!(
                    "item `{name}` is in steps {} of run {run_id}; say which with --step STEP",
                    steps.join(", ")
                ));
            }
        }
    }
    if args.all_failed {
        for it in items.iter().filter(|it| it.state == ItemState::Failed) {
            if !chosen
                .iter()
                .any(|c| c.step_id == it.step_id && c.key == it.key)
            {
                chosen.push(it.clone());
            }
        }
    }
    if !problems.is_empty() {
        return Err(WardError::Usage(format!(
            "{}; nothing was changed (`ward items {run_id}` lists the items; a step's items are \
             recorded when it starts)",
            problems.join("; ")
        )));
    }
    Ok(chosen)
}
