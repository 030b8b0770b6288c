//! `on_item:` of `for_each` steps: a mail and/or a command per item as it
//! ends (docs/playbook.md, "Fan-out").
//!
//! The scheduler tells [`ItemNotices`] each item end from its loop
//! (`ItemNotifier::item_ended`), which only queues it: a few threads of
//! their own ([`WORKERS`]) render the step's `on_item` templates for the
//! item and send, each send within its timeout. Nothing here can fail an
//! item, a step or the run: a notification that cannot be sent is one
//! line in the step's fan-out log and is counted; when the run has ended,
//! [`ItemNotices::finish`] waits (at most [`FINISH_WAIT`]) for what is
//! still queued and says how many were not sent, which the CLI records as
//! a `notify-failed` event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Setup, Undelivered, email};
use crate::execute::{ItemEnded, ItemNotifier};
use crate::model::ItemEnd;
use crate::model::notify::{CommandHook, DEFAULT_HOOK_TIMEOUT, Email, PasswordSource};
use crate::plan::Plan;
use crate::state::ItemState;
use crate::validate::ItemResolver;

/// How many notifications are sent at once: a step of thousands of items
/// must not open thousands of SMTP connections (or start as many programs).
pub const WORKERS: usize = 4;

/// How long the end of a run waits for notifications still queued.
pub const FINISH_WAIT: Duration = Duration::from_secs(30);

/// One item end to tell.
struct Job {
    resolver: Arc<ItemResolver>,
    run_id: String,
    step: String,
    key: String,
    item: serde_json::Value,
    state: &'static str,
    message: Option<String>,
    step_log: PathBuf,
}

/// What the workers share with the run.
#[derive(Debug, Default)]
struct Counts {
    /// Queued or being sent.
    pending: Mutex<usize>,
    /// Signalled when `pending` drops.
    drained: Condvar,
    /// Items whose notification was (fully) sent.
    sent: AtomicUsize,
    /// Items whose notification (or part of it) was not sent.
    failed: AtomicUsize,
    /// The first failure, for the run's event.
    first: Mutex<Option<String>>,
}

/// The `on_item:` notifier of one run.
pub struct ItemNotices {
    /// Each `for_each` step with `on_item:`, by id: its renderer (which
    /// holds the step's `on_item` and the run's template context).
    steps: HashMap<String, Arc<ItemResolver>>,
    queue: Mutex<Option<Sender<Job>>>,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for ItemNotices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemNotices")
            .field("steps", &self.steps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a worker needs to send, beside the job.
struct Channels {
    email: Option<Email>,
    command_timeout: crate::model::Duration,
    playbook_dir: PathBuf,
    host: String,
    /// Variables removed from a command's environment (the SMTP password's).
    hide: Vec<String>,
}

impl ItemNotices {
    /// The notifier of a run of `plan`; `None` when no step has `on_item:`.
    pub fn of(plan: &Plan, setup: &Setup) -> Option<Arc<ItemNotices>> {
        let steps: HashMap<String, Arc<ItemResolver>> = plan
            .steps
            .iter()
            .filter_map(|s| {
                let fan = s.fan_out.as_ref()?;
                fan.each.on_item()?;
                Some((s.id.clone(), fan.each.clone()))
            })
            .collect();
        if steps.is_empty() {
            return None;
        }
        let channels = Arc::new(Channels {
            email: setup.notify.email.clone(),
            command_timeout: setup
                .notify
                .command
                .as_ref()
                .map_or(DEFAULT_HOOK_TIMEOUT, |c| c.timeout),
            playbook_dir: setup.playbook_dir.clone(),
            host: plan.facts.host.clone(),
            hide: setup
                .notify
                .email
                .iter()
                .filter_map(|e| match &e.password {
                    Some(PasswordSource::Env(name)) => Some(name.clone()),
                    _ => None,
                })
                .collect(),
        });
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let counts = Arc::new(Counts::default());
        for n in 0..WORKERS {
            let (rx, counts, channels) = (rx.clone(), counts.clone(), channels.clone());
            // Plain threads, not the runtime's: the runtime waits for its
            // blocking tasks when it is dropped, and `finish` bounds the wait.
            let spawned = std::thread::Builder::new()
                .name(format!("on-item-{n}"))
                .spawn(move || work(&rx, &counts, &channels));
            if let Err(e) = spawned {
                tracing::warn!("on_item: cannot start a sending thread: {e}");
            }
        }
        Some(Arc::new(ItemNotices {
            steps,
            queue: Mutex::new(Some(tx)),
            counts,
        }))
    }

    /// Stops taking item ends and waits, at most `bound`, for those queued;
    /// what was not sent (failed, or still queued at the bound), if anything.
    pub fn finish(&self, bound: Duration) -> Option<Undelivered> {
        // The workers end once the queue is empty and closed.
        drop(self.queue.lock().map(|mut q| q.take()));
        let deadline = Instant::now() + bound;
        let mut pending = match self.counts.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pending = match self.counts.drained.wait_timeout(pending, left) {
                Ok((p, _)) => p,
                Err(p) => p.into_inner().0,
            };
        }
        let unfinished = *pending;
        drop(pending);
        let failed = self.counts.failed.load(Ordering::SeqCst);
        let sent = self.counts.sent.load(Ordering::SeqCst);
        if failed == 0 && unfinished == 0 {
            return None;
        }
        let first = self
            .counts
            .first
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .map(|f| format!("; the first: {f}"))
            .unwrap_or_default();
        let mut message = format!(
            "{failed} of {} per-item notifications not sent{first}",
            failed + sent + unfinished
        );
        if unfinished > 0 {
            message.push_str(&format!(
                "; {unfinished} still queued or sending when ward stopped waiting ({}s)",
                bound.as_secs()
            ));
        }
        message.push_str("; each is in its step's log");
        Some(Undelivered {
            channel: "on_item".into(),
            message,
        })
    }
}

impl ItemNotifier for ItemNotices {
    fn item_ended(&self, ended: ItemEnded<'_>) {
        let (word, end) = match ended.state {
            ItemState::Succeeded => ("succeeded", ItemEnd::Succeeded),
            ItemState::Failed => ("failed", ItemEnd::Failed),
            // Stopped to run again (an interrupt): not an end; the resume
            // that runs it tells its end.
            _ => return,
        };
        let Some(resolver) = self.steps.get(ended.step) else {
            return;
        };
        if !resolver.on_item().is_some_and(|o| o.on.contains(&end)) {
            return;
        }
        let Ok(queue) = self.queue.lock() else {
            return;
        };
        let Some(tx) = queue.as_ref() else {
            return;
        };
        if let Ok(mut p) = self.counts.pending.lock() {
            *p += 1;
        }
        let job = Job {
            resolver: resolver.clone(),
            run_id: ended.run_id.to_owned(),
            step: ended.step.to_owned(),
            key: ended.key.to_owned(),
            item: ended.item.clone(),
            state: word,
            message: ended.message.map(str::to_owned),
            step_log: ended.step_log.to_path_buf(),
        };
        if tx.send(job).is_err() {
            // No worker is left (none could be started).
            self.counts.failed.fetch_add(1, Ordering::SeqCst);
            done(&self.counts);
        }
    }
}

fn done(counts: &Counts) {
    if let Ok(mut p) = counts.pending.lock() {
        *p = p.saturating_sub(1);
    }
    counts.drained.notify_all();
}

/// A worker: takes jobs until the queue is closed and empty.
fn work(rx: &Mutex<Receiver<Job>>, counts: &Counts, channels: &Channels) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let problems = send(&job, channels);
        if problems.is_empty() {
            counts.sent.fetch_add(1, Ordering::SeqCst);
        } else {
            counts.failed.fetch_add(1, Ordering::SeqCst);
            let text = problems.join("; ");
            if let Ok(mut first) = counts.first.lock()
                && first.is_none()
            {
                *first = Some(format!("step `{}` item `{}`: {text}", job.step, job.key));
            }
            log_failure(&job.step_log, &job.key, &text);
        }
        done(counts);
    }
}

/// A warning line in the step's fan-out log (best effort, like the log).
fn log_failure(log: &Path, key: &str, text: &str) {
    let line = format!("warning: item `{key}`: on_item notification not sent: {text}\n");
    if let Ok(mut f) = crate::state::private::open_log(log) {
        let _ = std::io::Write::write_all(&mut f, line.as_bytes());
    }
}

/// Renders and sends one item's notification; what went wrong, one line each.
fn send(job: &Job, channels: &Channels) -> Vec<String> {
    let notice = match job.resolver.notice(&job.item, job.state) {
        Some(Ok(n)) => n,
        Some(Err(e)) => return vec![format!("cannot render it: {e}")],
        None => return Vec::new(),
    };
    let mut problems = Vec::new();
    if !notice.to.is_empty() {
        let sent = match &channels.email {
            Some(e) => {
                let subject = notice.subject.clone().unwrap_or_else(|| {
                    format!("[ward] {}: item {} {}", job.step, job.key, job.state)
                });
                let body = notice
                    .body
                    .clone()
                    .unwrap_or_else(|| default_body(job, channels));
                email::item_message(e, &notice.to, &subject, &body)
                    .and_then(|m| email::send_message(e, m, &channels.playbook_dir))
            }
            // Validation requires `notify.email` with `on_item.email`.
            None => Err("the playbook has no `notify.email`".into()),
        };
        if let Err(e) = sent {
            problems.push(format!("email: {}", one_line(&e)));
        }
    }
    if let Some(argv) = notice.command {
        let hook = CommandHook {
            argv,
            on: Vec::new(),
            timeout: channels.command_timeout,
        };
        let json = serde_json::json!({
            "run_id": job.run_id,
            "step": job.step,
            "key": job.key,
            "item": job.item,
            "state": job.state,
            "message": job.message,
            "host": channels.host,
        });
        let hide: Vec<&str> = channels.hide.iter().map(String::as_str).collect();
        let ran = serde_json::to_vec(&json)
            .map_err(|e| e.to_string())
            .and_then(|json| super::command::run(&hook, &json, &channels.playbook_dir, &hide));
        if let Err(e) = ran {
            problems.push(format!("command: {}", one_line(&e)));
        }
    }
    problems
}

/// The mail's text when `body:` is not given.
fn default_body(job: &Job, channels: &Channels) -> String {
    let mut text = format!(
        "Item {} of step {} {} in run {} on {}.\n",
        job.key, job.step, job.state, job.run_id, channels.host
    );
    if let Some(m) = &job.message {
        text.push_str(&format!("\n{m}\n"));
    }
    text.push_str(&format!(
        "\nDetails: ward items {} --step {}\n",
        job.run_id, job.step
    ));
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
