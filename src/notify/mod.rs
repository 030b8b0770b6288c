//! After a run: mail, a hook command, healthchecks-style pings and a
//! Prometheus metrics file (docs/notify.md).
//!
//! Beside the pipeline, like `report/`: it reads the run's records from
//! the store and the playbook's `notify:`/`metrics:` (model/notify.rs) and
//! is called by the CLI once a run has ended, however it ended. Nothing
//! here can change a run's result or exit code: a notification that
//! cannot be sent is one line on stderr and a `notify-failed` note in the
//! run's events.

pub mod command;
pub mod email;
pub mod http;
pub mod item;
pub mod metrics;
pub mod summary;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::execute::{Event, Reporter};
use crate::model::Notify;
use crate::model::notify::{HttpUrl, PasswordSource, resolve};
use crate::state::{Change, NoteKind, Store};
pub use summary::{RunEnd, RunResult, Summary};

/// What the CLI hands over from the playbook.
#[derive(Clone, Debug)]
pub struct Setup {
    /// `notify:`.
    pub notify: Notify,
    /// `metrics:`, resolved against the playbook's folder.
    pub metrics: Option<PathBuf>,
    /// The playbook's folder (relative paths, the hook's working folder).
    pub playbook_dir: PathBuf,
    /// Playbook name (for a summary without records).
    pub playbook: String,
    /// Playbook file.
    pub playbook_path: String,
}

impl Setup {
    /// From a playbook.
    pub fn of(playbook: &crate::model::Playbook) -> Setup {
        let playbook_dir = crate::source::playbook_dir(playbook.source.path());
        Setup {
            notify: playbook.notify.clone(),
            metrics: playbook
                .metrics
                .as_ref()
                .map(|m| resolve(&playbook_dir, &m.value)),
            playbook_dir,
            playbook: playbook.name.value.clone(),
            playbook_path: std::fs::canonicalize(playbook.source.path())
                .unwrap_or_else(|_| playbook.source.path().to_path_buf())
                .display()
                .to_string(),
        }
    }

    /// True if there is nothing to do after a run.
    pub fn is_empty(&self) -> bool {
        self.notify.is_empty() && self.metrics.is_none()
    }

    /// The ping at the start, if there is one.
    fn start_url(&self) -> Option<StartUrl> {
        let ping = self.notify.ping.as_ref()?;
        Some(StartUrl {
            url: ping.start.clone()?,
            timeout: ping.timeout.std(),
            ca: self.ping_ca(),
        })
    }

    /// `notify.ping.ca_file`, resolved.
    fn ping_ca(&self) -> Option<PathBuf> {
        let ca = self.notify.ping.as_ref()?.ca_file.as_ref()?;
        Some(resolve(&self.playbook_dir, ca))
    }
}

struct StartUrl {
    url: HttpUrl,
    timeout: Duration,
    ca: Option<PathBuf>,
}

/// A notification that could not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// `email`, `command`, `ping start`, `ping success`, `ping failure`, `metrics`.
    pub channel: String,
    /// Why, in one line, without secrets.
    pub message: String,
}

fn undelivered(channel: impl Into<String>, message: String) -> Undelivered {
    Undelivered {
        channel: channel.into(),
        // One line on stderr and in the events, whatever a server said.
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// One GET to a ping URL; anything but 2xx is an error.
fn ping(url: &HttpUrl, timeout: Duration, ca: Option<&Path>) -> Result<(), String> {
    match http::get(url, timeout, ca)? {
        200..=299 => Ok(()),
        code => Err(format!("{} answered HTTP {code}", url.host)),
    }
}

/// A reporter that hits the `start` ping when the run starts (after its
/// lock is taken and it is recorded), on a thread of its own so the run
/// does not wait for it; [`PingStart::finish`] waits for it, so the end
/// ping always comes after the start ping.
pub struct PingStart<'r> {
    inner: &'r mut dyn Reporter,
    url: Option<StartUrl>,
    sent: Option<JoinHandle<Result<(), String>>>,
}

impl<'r> PingStart<'r> {
    /// Wraps `inner`; pings only if `setup` has a start URL.
    pub fn new(inner: &'r mut dyn Reporter, setup: &Setup) -> PingStart<'r> {
        PingStart {
            inner,
            url: setup.start_url(),
            sent: None,
        }
    }

    /// Waits for the start ping; what went wrong, if anything.
    pub fn finish(self) -> Option<Undelivered> {
        let handle = self.sent?;
        let result = handle
            .join()
            .unwrap_or_else(|_| Err("the ping thread stopped unexpectedly".into()));
        result.err().map(|e| undelivered("ping start", e))
    }
}

impl Reporter for PingStart<'_> {
    fn event(&mut self, event: &Event<'_>) {
        if let Event::RunStarted { .. } = event
            && let Some(start) = self.url.take()
        {
            self.sent = Some(std::thread::spawn(move || {
                ping(&start.url, start.timeout, start.ca.as_deref())
            }));
        }
        self.inner.event(event);
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        self.inner.tick_interval()
    }

    fn tick(&mut self) {
        self.inner.tick();
    }
}

/// Everything after a run: builds the summary from the store, writes the
/// metrics, sends what `notify:` asks for (at the same time, each within
/// its own timeout), then reports and records what could not be sent
/// (with `earlier`: what failed during the run).
/// Never fails: the run's result is already decided.
pub async fn after_run(
    store: &mut dyn Store,
    setup: &Setup,
    end: &RunEnd<'_>,
    earlier: Vec<Undelivered>,
) -> Vec<Undelivered> {
    let mut failed = earlier;
    // What failed earlier (the start ping, `on_item:`) is still recorded.
    if setup.is_empty() && failed.is_empty() {
        return failed;
    }
    let summary = match summary::build(store, end).await {
        Ok(s) => s,
        Err(e) => {
            let host = store.host().hostname.clone();
            Summary::without_records(
                &setup.playbook,
                &setup.playbook_path,
                &host,
                end,
                &format!("the run's records could not be read: {e}"),
            )
        }
    };
    // The run is over: a signal now ends the waiting at once (the run's
    // result and exit code stand), rather than being swallowed by the
    // run's listeners until every channel has timed out.
    // A thread of its own, not the runtime's blocking pool: the runtime
    // waits for its blocking tasks when it is dropped, this one is left
    // behind when ward exits.
    let (sent, sending) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("notify".into()).spawn({
        let (setup, summary) = (setup.clone(), summary.clone());
        move || {
            let _ = sent.send(deliver(&setup, &summary));
        }
    });
    let lost = |e: tokio::sync::oneshot::error::RecvError| {
        format!("the sending thread ended without an answer: {e}")
    };
    let answer = match spawned {
        Err(e) => Ok(Err(format!("cannot start the sending thread: {e}"))),
        Ok(_) => match crate::execute::Signals::install() {
            Ok(mut signals) => tokio::select! {
                sent = sending => Ok(sent.map_err(lost)),
                got = signals.recv() => Err(got),
            },
            // No listener: wait as before (the timeouts bound it).
            Err(_) => Ok(sending.await.map_err(lost)),
        },
    };
    match answer {
        Ok(Ok(undelivered)) => failed.extend(undelivered),
        Ok(Err(message)) => failed.push(Undelivered {
            channel: "notifications".into(),
            message,
        }),
        Err(signal) => failed.push(Undelivered {
            channel: "notifications".into(),
            message: format!("stopped by {signal} before every one was sent"),
        }),
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for f in &failed {
        eprintln!(
            "warning: notification not sent ({}): {}; the run's result stands",
            f.channel, f.message
        );
    }
    if !failed.is_empty() {
        let notes = failed
            .iter()
            .map(|f| Change::Note {
                kind: NoteKind::NotifyFailed,
                message: format!("{}: {}", f.channel, f.message),
                at,
            })
            .collect();
        if let Err(e) = store.apply(end.run_id, notes).await {
            eprintln!("warning: could not record that a notification was not sent: {e}");
        }
    }
    failed
}

/// Sends what `setup` asks for about `summary`, all at once; returns what
/// could not be sent.
pub fn deliver(setup: &Setup, summary: &Summary) -> Vec<Undelivered> {
    let notify = &setup.notify;
    let dir = setup.playbook_dir.as_path();
    std::thread::scope(|scope| {
        let mut jobs: Vec<(
            String,
            std::thread::ScopedJoinHandle<'_, Result<(), String>>,
        )> = Vec::new();
        if let Some(path) = &setup.metrics {
            jobs.push((
                "metrics".into(),
                scope.spawn(move || metrics::write(path, summary)),
            ));
        }
        if let Some(p) = &notify.ping {
            // A skipped night sends no end ping: the service sees a start
            // that never finished and alarms after its grace time, as for
            // any night without a backup; `ward check` says why.
            let (word, url) = match summary.result {
                RunResult::Succeeded => ("success", &p.success),
                RunResult::Skipped => ("skipped", &None),
                // The service saw no ping at the slot and alarms by itself.
                RunResult::Missed => ("missed", &None),
                RunResult::Failed | RunResult::Interrupted | RunResult::StateLost => {
                    ("failure", &p.failure)
                }
            };
            if let Some(url) = url {
                let timeout = p.timeout.std();
                let ca = setup.ping_ca();
                jobs.push((
                    format!("ping {word}"),
                    scope.spawn(move || ping(url, timeout, ca.as_deref())),
                ));
            }
        }
        if let Some(e) = notify.email.as_ref().filter(|e| summary.matches(&e.on)) {
            jobs.push((
                format!("email via {}:{}", e.host, e.port),
                scope.spawn(move || email::send(e, summary, dir)),
            ));
        }
        if let Some(c) = notify.command.as_ref().filter(|c| summary.matches(&c.on)) {
            let hide: Vec<&str> = notify
                .email
                .iter()
                .filter_map(|e| match &e.password {
                    Some(PasswordSource::Env(name)) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            jobs.push((
                "command".into(),
                scope.spawn(move || {
                    let json = serde_json::to_vec(summary)
                        .map_err(|e| format!("cannot write the summary as JSON: {e}"))?;
                    command::run(c, &json, dir, &hide)
                }),
            ));
        }
        jobs.into_iter()
            .filter_map(|(channel, job)| {
                let result = job
                    .join()
                    .unwrap_or_else(|_| Err("stopped unexpectedly".into()));
                result.err().map(|e| undelivered(channel, e))
            })
            .collect()
    })
}

/// The `--state` a run was given, or `$WARD_STATE` (which the operator's
/// shell may not have), for the commands a summary shows.
pub fn state_for_commands(given: Option<&Path>) -> Option<PathBuf> {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WARD_STATE").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}
