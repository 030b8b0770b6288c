//! `ward items RUN_ID [--status S] [--step STEP] [--json]`: the items of a run's
//! `for_each` steps, read-only, like `ward status` for steps.

use std::io::Write;

use super::ItemsArgs;
use super::inspect::find_run;
use crate::error::{WardError, exit};
use crate::report::{Style, recorded_running_but_gone, times_to_rfc3339};
use crate::session::{StateSession, block_on};
use crate::state::{Access, ItemRecord, ItemState, RunState};

pub(super) fn items(args: &ItemsArgs) -> Result<i32, WardError> {
    let state = args
        .status
        .as_deref()
        .map(|word| {
            ItemState::parse(word.trim()).ok_or_else(|| {
                WardError::Usage(format!(
                    "--status {word}: not an item state; use one of pending, running, \
                     succeeded, failed, skipped, paused"
                ))
            })
        })
        .transpose()?;
    // `--state failed` is an easy slip (the issue spelled it so): said
    // plainly instead of "no state database at failed".
    if let Some(db) = &args.state.state
        && ItemState::parse(&db.to_string_lossy()).is_some()
        && !db.exists()
    {
        return Err(WardError::Usage(format!(
            "--state names the state database; to list the {} items write `--status {}`",
            db.display(),
            db.display()
        )));
    }
    let (run, mut items) = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = find_run(&session, Some(&args.run_id)).await?;
        let items = session
            .store
            .items(&run.id, args.step.as_deref(), state)
            .await?;
        Ok::<_, WardError>((run, items))
    })??;
    // An item recorded `running` in a run whose ward is gone (a crash,
    // `kill -9`) will not end by itself: said, as `ward status` says it of
    // steps, rather than shown as if it still ran.
    let live = run.state == RunState::Running && !recorded_running_but_gone(&run);
    if !live {
        for item in items.iter_mut().filter(|i| i.state == ItemState::Running) {
            item.message = Some(
                "its end was not recorded (ward's process is gone); `ward resume` runs it again"
                    .to_owned(),
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        // Times as in every JSON document of ward: RFC 3339 (cli.md, "JSON output").
        let mut json = serde_json::to_value(&items).map_err(std::io::Error::from)?;
        if let Some(list) = json.as_array_mut() {
            for item in list {
                times_to_rfc3339(item, &["started_at", "finished_at"]);
            }
        }
        serde_json::to_writer_pretty(&mut out, &json).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if items.is_empty() {
        let which = state.map(|s| format!(" {s}")).unwrap_or_default();
        writeln!(out, "run {} has no{which} items", run.id)?;
    } else {
        render(&mut out, &items, Style::stdout())?;
    }
    out.flush()?;
    Ok(exit::OK)
}

/// One line per item: step, place in its list, key, state, attempts, exit
/// code, and why (for the ones that did not succeed).
fn render(out: &mut dyn Write, items: &[ItemRecord], style: Style) -> std::io::Result<()> {
    let step_w = items
        .iter()
        .map(|i| i.step_id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let key_w = items
        .iter()
        .map(|i| i.key.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 40);
    // Items of a `workers:` step name the worker that claimed them last
    // (`host:pid`, where its log is); other runs keep the narrower table.
    let worker_of = |i: &ItemRecord| {
        i.worker.as_deref().map_or_else(String::new, |w| {
            w.rsplit_once(':')
                .map_or(w, |(host_pid, _)| host_pid)
                .to_owned()
        })
    };
    let worker_w = items.iter().map(|i| worker_of(i).len()).max().unwrap_or(0);
    let worker_head = if worker_w > 0 {
        format!("{:<worker_w$}  ", "WORKER", worker_w = worker_w.max(6))
    } else {
        String::new()
    };
    writeln!(
        out,
        "{:<step_w$}  {:>6}  {:<key_w$}  {:<9}  ATTEMPTS  EXIT  {worker_head}MESSAGE",
        "STEP", "#", "KEY", "STATE"
    )?;
    for i in items {
        let state = format!("{:<9}", i.state.as_str());
        let state = match i.state {
            ItemState::Failed => style.error(&state),
            ItemState::Succeeded => state,
            _ => style.warning(&state),
        };
        let exit = i
            .exit_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let worker = if worker_w > 0 {
            format!("{:<worker_w$}  ", worker_of(i), worker_w = worker_w.max(6))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{:<step_w$}  {:>6}  {:<key_w$}  {state}  {:>8}  {:>4}  {worker}{}",
            i.step_id,
            i.position + 1,
            i.key,
            i.attempts,
            exit,
            i.message.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
