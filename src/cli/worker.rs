//! `ward worker`: runs the items of `workers:` steps, claimed from a shared
//! PostgreSQL state (`execute/worker.rs` has the loop, `state/queue.rs`
//! the claims).
//!
//! A run's plan is read here as `ward resume` reads it: the playbook file
//! the run recorded (the same path on every host), the run's recorded
//! variables and facts, secrets given again (`--var`, or the playbook's
//! own sources on this host); a step whose definition differs from the
//! one the run recorded is refused, so that every item runs the same
//! step whichever host claims it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::WorkerArgs;
use crate::error::{WardError, exit};
use crate::execute::worker::{Loaded, PlanSource, WorkerEnd, WorkerOptions, serve};
use crate::session::{StateSession, block_on};
use crate::state::queue::{Offer, WorkerId};
use crate::state::{Access, Store};

pub(super) fn worker(args: &WorkerArgs) -> Result<i32, WardError> {
    if let Some(bad) = args.tags.iter().find(|t| !crate::parse::is_tag(t)) {
        return Err(WardError::Usage(format!(
            "`--tag {bad}` is not a tag: use letters, digits, `-`, `_` and `.` (at most 64)"
        )));
    }
    if args.max_parallel == Some(0) {
        return Err(WardError::Usage(
            "`--max-parallel 0` would run nothing; give at least 1".into(),
        ));
    }
    block_on(work(args))?
}

async fn work(args: &WorkerArgs) -> Result<i32, WardError> {
    let mut session = StateSession::open(args.state.state.as_deref(), Access::Write).await?;
    let store = session.store.as_ref();
    if store.queue().is_none() {
        return Err(WardError::Usage(format!(
            "`ward worker` claims items from a shared state: give `--state postgres://...` (or \
             set WARD_STATE); {} is a local database, whose runs run their own items",
            store.describe()
        )));
    }
    if let Some(run) = &args.run
        && store.run(run).await?.is_none()
    {
        return Err(WardError::RunNotFound(format!(
            "no run {run} in {}",
            store.describe()
        )));
    }
    let host = store.host().hostname.clone();
    let pid = std::process::id();
    let id = WorkerId {
        id: format!("{host}:{pid}:{:08x}", fastrand::u32(..)),
        host,
        pid,
    };
    let holder = crate::session::holder(&format!("worker {}", id.id), store);
    let lease = store
        .acquire_lease(&id.lease_name(), &holder)
        .await
        .map_err(|e| match e {
            // The state could not be written: exit 4, as for any command.
            crate::state::LeaseError::State(e) => WardError::State(e),
            // A random id already leased (never in practice).
            held => WardError::Usage(format!("cannot start the worker: {held}")),
        })?;
    let tags = if args.tags.is_empty() {
        String::new()
    } else {
        format!(" with tags {}", args.tags.join(", "))
    };
    eprintln!(
        "worker {}{tags}: claiming items {} from {}",
        id.id,
        args.run
            .as_deref()
            .map_or_else(|| "of any run".to_owned(), |r| format!("of run {r}")),
        store.describe()
    );
    let options = WorkerOptions {
        id: id.clone(),
        tags: args.tags.clone(),
        run: args.run.clone(),
        max_parallel: args.max_parallel,
        kill_grace: crate::session::kill_grace()?,
        copies_dir: Some(store.folder().join("copies")),
    };
    let mut source = Playbooks {
        vars: args.vars.vars.clone(),
        notices: Vec::new(),
    };
    let summary = serve(store, options, &mut source).await;
    // What `on_item:` could not send is said, and noted in its run.
    for (run, notices) in source.notices {
        if let Some(u) = notices.finish(crate::notify::item::FINISH_WAIT) {
            eprintln!("warning: run {run}: {} not sent: {}", u.channel, u.message);
            let note = crate::state::Change::Note {
                kind: crate::state::NoteKind::NotifyFailed,
                message: format!("worker {}: {}: {}", id.id, u.channel, u.message),
                at: crate::clock::wall_ms(),
            };
            if let Err(e) = session.store.apply(&run, vec![note]).await {
                tracing::warn!("cannot note it in run {run}: {e}");
            }
        }
    }
    if let Err(e) = lease.release().await {
        tracing::warn!("worker lease not released: {e}");
    }
    let pct = |p: usize| {
        let t = &summary.claim_times;
        t.get((t.len() * p / 100).min(t.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "worker {}: {} items succeeded, {} failed, {} stopped (pending again){}; {} claims, \
         p50 {:.1} ms, p99 {:.1} ms",
        id.id,
        summary.succeeded,
        summary.failed,
        summary.stopped,
        if summary.lost > 0 {
            format!(", {} ends not recorded (claims lost)", summary.lost)
        } else {
            String::new()
        },
        summary.claim_times.len(),
        pct(50),
        pct(99)
    );
    Ok(match summary.end {
        WorkerEnd::RunEnded => exit::OK,
        WorkerEnd::Interrupted(sig) => super::signal_code(sig),
        WorkerEnd::LeaseLost(e) => {
            eprintln!("error: {e}");
            exit::STATE
        }
    })
}

/// Reads a run's plan from its playbook, as `ward resume` does.
struct Playbooks {
    vars: Vec<String>,
    /// The `on_item:` senders made for each run's step, to finish at the end.
    notices: Vec<(String, Arc<crate::notify::item::ItemNotices>)>,
}

impl PlanSource for Playbooks {
    fn load<'a>(
        &'a mut self,
        store: &'a dyn Store,
        offer: &'a Offer,
    ) -> Pin<Box<dyn Future<Output = Result<Loaded, String>> + 'a>> {
        Box::pin(async move {
            let run = store
                .run(&offer.run_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the run is no longer recorded".to_owned())?;
            let overrides = super::vars::for_resume(&run, &self.vars).map_err(|e| e.to_string())?;
            let facts = crate::session::recorded_facts_of(&run).map_err(|e| e.to_string())?;
            let path = std::path::PathBuf::from(&run.playbook_path);
            let checked =
                crate::check_file_with(&path, &overrides, facts).map_err(|e| e.to_string())?;
            let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
            let plan = checked.plan.ok_or_else(|| {
                format!(
                    "its playbook {} has {errors} errors here (`ward validate` shows them)",
                    run.playbook_path
                )
            })?;
            let records = store.steps(&run.id).await.map_err(|e| e.to_string())?;
            let changed =
                crate::session::changed_steps(&plan, &records, store).map_err(|e| e.to_string())?;
            // This step changed, or none could be compared (a newer
            // ward's record): refused. Other steps are not this worker's.
            if let Some(why) = changed
                .iter()
                .find(|c| c.step().is_none_or(|s| s == offer.step_id))
            {
                // Secrets are fingerprinted with the state folder's key,
                // which is per host: another host's worker needs the run
                // host's key to see the same step.
                let key_hint = if plan.needs_fingerprint_key() {
                    format!(
                        "; the playbook has secrets, fingerprinted with {}: on another host \
                         than the run's, copy the run host's key there (mode 0600)",
                        store.folder().join("fingerprint.key").display()
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "its playbook {} or its variables differ here from what the run recorded \
                     for this step ({why}); every worker must run the same step (same file, \
                     same `--var`s and secrets){key_hint}",
                    run.playbook_path
                ));
            }
            let step_attempt = records
                .iter()
                .find(|r| r.id == offer.step_id)
                .map_or(1, |r| r.attempts);
            // `on_item:` is told by whoever records the item's end: here.
            let setup = crate::notify::Setup::of(&plan.playbook);
            let notices = crate::notify::item::ItemNotices::of(&plan, &setup);
            if let Some(n) = &notices {
                self.notices.push((run.id.clone(), n.clone()));
            }
            Ok(Loaded {
                plan: Arc::new(plan),
                step_attempt,
                notifier: notices.map(|n| n as Arc<dyn crate::execute::ItemNotifier>),
            })
        })
    }
}
