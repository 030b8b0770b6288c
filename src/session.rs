//! Starting and resuming runs: state, lease, crash reclaim, then the executor.
//!
//! The CLI checks and plans; these functions do everything between a
//! [`Plan`] and an [`Outcome`]. They are async (the store is); the CLI
//! runs each command on one current-thread runtime ([`block_on`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::WardError;
use crate::execute::{self, ExecOptions, Execution, Reporter, Start};
use crate::plan::Plan;
use crate::plan::fingerprint::{self, Fingerprint};
use crate::preflight;
use crate::state::{
    Access, Change, LeaseHolder, NewRun, NewStep, NoteKind, PreconditionsRecord, RecordedFacts,
    RunRecord, StateError, StepState, Store, recovery,
};
use crate::template::{FingerprintKey, RunFacts, is_secret_name};

pub use crate::execute::Outcome;

/// An open state store, and the `--state` it was named by.
pub struct StateSession {
    /// The store.
    pub store: Box<dyn Store>,
    /// The `--state` given on the command line, if any (hints repeat it).
    pub given: Option<PathBuf>,
}

impl StateSession {
    /// Opens the state at `--state`, `$WARD_STATE` or the default place
    /// (`state::open`: whatever its backend checks first); only
    /// [`Access::Create`] (`ward run`) creates a missing database.
    pub async fn open(given: Option<&Path>, access: Access) -> Result<StateSession, WardError> {
        let store = crate::state::open(given, access).await?;
        Ok(StateSession {
            store,
            given: given.map(Path::to_path_buf),
        })
    }
}

/// Runs `work` to its end on a new current-thread runtime: how the CLI,
/// which is synchronous, calls the store and the executor.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> Result<T, WardError> {
    Ok(runtime()?.block_on(work))
}

/// Knobs of a run that do not come from the playbook.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Echo step output to the reporter (at a terminal).
    pub echo_output: bool,
    /// `--skip-preconditions`: run without checking them (recorded).
    pub skip_preconditions: bool,
    /// How `confirm:` steps are confirmed (`--yes`, a terminal, nobody).
    pub confirm: execute::confirm::ConfirmSetup,
    /// Events recorded with the run as it starts (the snapshot chosen, the
    /// guards overridden).
    pub notes: Vec<(NoteKind, String)>,
    /// `restore.marker`: written before the first step, removed when every
    /// step succeeded.
    pub marker: Option<(PathBuf, crate::restore::Marker)>,
    /// Told when an item of a `for_each` step ends (`on_item:`).
    pub item_notifier: Option<std::sync::Arc<dyn execute::ItemNotifier>>,
}

/// Refuses a run (before anything is recorded or changed) that would
/// reach a `confirm:` step nobody can confirm: no terminal and no `--yes`.
/// `done(i)`: step `i` needs no question (it succeeded, or was confirmed,
/// before a resume). Steps whose `if:` is false are never reached.
pub fn check_confirmable(
    v: &Plan,
    settings: &RunSettings,
    done: impl Fn(usize) -> bool,
) -> Result<(), WardError> {
    if settings.confirm.by != execute::confirm::ConfirmBy::Nobody {
        return Ok(());
    }
    let waiting: Vec<String> = v
        .steps
        .iter()
        .filter(|s| s.confirm.is_some())
        .filter(|s| s.condition.as_ref().is_none_or(|c| c.value))
        .filter(|s| !done(s.index))
        .map(|s| format!("`{}`", s.id))
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    Err(WardError::NotConfirmed(format!(
        "playbook `{}` not run: step{} {} must be confirmed by the operator (`confirm:`), and \
         there is no terminal to ask at; run it at a terminal, or pass --yes to confirm \
         (recorded with who gave it); nothing was run",
        v.playbook.name.value,
        if waiting.len() == 1 { "" } else { "s" },
        waiting.join(", ")
    )))
}

/// A new, unique, sortable run id: local start time plus a random suffix.
pub fn new_run_id() -> String {
    run_id_at(chrono::Local::now().format("%Y%m%d-%H%M%S"))
}

/// A run id for a run of `stamp` (`YYYYMMDD-HHMMSS`): the stamp and 32
/// random bits. Run ids must not repeat across the host, not only within
/// one state database: a run's leftover processes are found by the run id
/// in their environment, and cron starts many playbooks in the same
/// second. (Until 2026-12 the suffix had 16 bits: runs started in the same
/// second met once in a few thousand pairs, and one run's clean-up then
/// stopped the other's steps.)
pub fn run_id_at(stamp: impl std::fmt::Display) -> String {
    format!("{stamp}-{:08x}", fastrand::u32(..))
}

/// `WARD_KILL_GRACE`, read once by `start` and `resume` before anything
/// runs: a mistyped value must not silently become the default (a service
/// given 10 s instead of the 2 min it needs to flush would be killed
/// mid-write).
pub fn kill_grace() -> Result<Duration, WardError> {
    match std::env::var("WARD_KILL_GRACE") {
        Err(_) => Ok(execute::DEFAULT_KILL_GRACE),
        Ok(t) => crate::model::Duration::parse(&t)
            .map(|d| d.std())
            .map_err(|e| {
                WardError::Usage(format!(
                    "WARD_KILL_GRACE={t:?} is not a duration ({e}); use e.g. `30s` or `2m`, or unset it for the default 10s"
                ))
            }),
    }
}

fn work_dir(v: &Plan) -> PathBuf {
    crate::source::playbook_dir(v.playbook.source.path())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The variables, secret values masked, sorted by name.
fn masked(
    map: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> BTreeMap<String, serde_json::Value> {
    map.into_iter()
        .map(|(k, v)| {
            if is_secret_name(&k) {
                (k, serde_json::Value::String("********".into()))
            } else {
                (k, v)
            }
        })
        .collect()
}

/// The `ward.*` facts as the state records them.
fn recorded_facts(f: &RunFacts) -> RecordedFacts {
    RecordedFacts {
        date: f.date.clone(),
        time: f.time.clone(),
        timestamp: f.timestamp.clone(),
        weekday: f.weekday.clone(),
        host: f.host.clone(),
        run_id: f.run_id.clone(),
        playbook_dir: f.playbook_dir.clone(),
    }
}

/// The `ward.*` facts a run recorded, to resume it with. Facts that cannot
/// be read are an error: a resume must not render its steps with other
/// dates or another run id than the run was started with.
pub fn recorded_facts_of(run: &RunRecord) -> Result<RunFacts, WardError> {
    let f = run.facts.clone().map_err(|e| WardError::RunRecordDamaged {
        run: run.id.clone(),
        what: "`ward.*` facts",
        problem: e.0,
    })?;
    Ok(RunFacts {
        date: f.date,
        time: f.time,
        timestamp: f.timestamp,
        weekday: f.weekday,
        host: f.host,
        run_id: f.run_id,
        playbook_dir: f.playbook_dir,
    })
}

/// Who a run's lease names: the run, this process, the store's host, now.
pub fn holder(run_id: &str, store: &dyn Store) -> LeaseHolder {
    LeaseHolder {
        run_id: run_id.to_owned(),
        pid: std::process::id(),
        host: store.host().hostname.clone(),
        since: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

/// Which steps' processes a crash reclaim leaves running: a service that
/// `service.start` (or a `keep_children` step) started outlives the ward
/// that started it.
fn keeper(v: &Plan) -> impl Fn(&str) -> bool + '_ {
    move |id: &str| {
        v.steps
            .iter()
            .any(|s| s.id == id && execute::keeps_children(s))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, WardError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WardError::Runtime)
}

/// Starts a new run of a plan. `run_id` must be the one the playbook was
/// checked with (templates may use it). `lease`: the run lock if the
/// caller already took it (a scheduled run that waited for it, see
/// `overlap:`); otherwise it is taken here, without waiting.
/// A `workers:` step hands its items to `ward worker`s through a shared
/// store: refused before anything runs when the state is local.
fn check_workers(v: &Plan, session: &StateSession) -> Result<(), WardError> {
    if session.store.queue().is_some() {
        return Ok(());
    }
    match v
        .steps
        .iter()
        .find(|s| s.fan_out.as_ref().is_some_and(|f| f.workers.is_some()))
    {
        Some(step) => Err(WardError::Usage(format!(
            "step `{}` hands its items to `ward worker`s (`workers:`), which claim them from a \
             shared state: run it with `--state postgres://...` (or `WARD_STATE`), or remove \
             `workers:` to run the items here; the state now is {}",
            step.id,
            session.store.describe()
        ))),
        None => Ok(()),
    }
}

pub async fn start(
    v: &Plan,
    run_id: &str,
    overrides: &[(String, String)],
    session: &mut StateSession,
    settings: &RunSettings,
    reporter: &mut dyn Reporter,
    lease: Option<crate::state::Lease>,
) -> Result<Outcome, WardError> {
    check_workers(v, session)?;
    let grace = kill_grace()?;
    let holder = holder(run_id, session.store.as_ref());
    let lease = match lease {
        Some(lease) => lease,
        None => session
            .store
            .acquire_lease(v.playbook.lock_name(), &holder)
            .await
            .map_err(|lease| WardError::NotStarted {
                what: format!(
                    "playbook `{}` ({}) not run",
                    v.playbook.name.value,
                    v.playbook.source.path().display()
                ),
                lease: Box::new(lease),
            })?,
    };
    for crashed in recovery::reclaim_crashed(
        session.store.as_mut(),
        v.playbook.lock_name(),
        run_id,
        now_ms(),
    )
    .await?
    {
        // A dead run's steps may still be running; they must not race this run.
        execute::orphans::stop(&crashed, grace, &keeper(v));
    }
    let preconditions = preconditions(v, run_id, session, settings).await?;
    let text = v.playbook.source.text();
    let run = NewRun {
        id: run_id.to_owned(),
        playbook_name: v.playbook.name.value.clone(),
        playbook_path: std::fs::canonicalize(v.playbook.source.path())
            .unwrap_or_else(|_| v.playbook.source.path().to_path_buf())
            .display()
            .to_string(),
        playbook_hash: v.playbook.source.sha256(),
        playbook_text: text.to_owned(),
        lock_name: v.playbook.lock_name().to_owned(),
        vars: masked(v.vars.clone()),
        overrides: masked(
            overrides
                .iter()
                .map(|(k, val)| (k.clone(), serde_json::Value::String(val.clone()))),
        ),
        facts: recorded_facts(&v.facts),
        host: holder.host.clone(),
        pid: std::process::id(),
        ward_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: now_ms(),
        max_age_ms: v
            .playbook
            .max_age
            .as_ref()
            .map(|d| i64::try_from(d.value.std().as_millis()).unwrap_or(i64::MAX)),
        preconditions,
    };
    let skipped = run.preconditions.as_ref().and_then(|p| p.skip_reason());
    let key = key_if_needed(v, session.store.folder())?;
    let steps: Vec<NewStep> = v
        .steps
        .iter()
        .zip(v.fingerprint(key.as_ref()).steps)
        .map(|(s, (_, definition))| NewStep {
            id: s.id.clone(),
            position: s.index,
            definition,
            compensation: s.compensation_only,
        })
        .collect();
    if skipped.is_none() {
        write_marker(settings)?;
    }
    session.store.create_run(run, steps).await?;
    if !settings.notes.is_empty() {
        let at = now_ms();
        let notes = settings
            .notes
            .iter()
            .map(|(kind, message)| Change::Note {
                kind: *kind,
                message: message.clone(),
                at,
            })
            .collect();
        session.store.apply(run_id, notes).await?;
    }
    if let Some(message) = skipped {
        // Recorded `skipped` with its steps by `create_run`; nothing ran,
        // so nothing (not even a `when: always` step) has to be closed.
        lease.release().await?;
        return Ok(Outcome {
            state: crate::state::RunState::Skipped,
            ending: execute::Ending::Skipped,
            message: Some(message),
        });
    }
    let start = Start {
        initial: vec![(StepState::Pending, 0); v.steps.len()],
        flush_first: Vec::new(),
        resumed: false,
    };
    let outcome = execute_recorded(v, run_id, start, session, settings, grace, reporter).await;
    remove_marker(settings, &outcome);
    // Only after the run's end is recorded.
    lease.release().await?;
    Ok(outcome)
}

/// Writes `restore.marker` (nothing has changed yet: refusing is safe).
fn write_marker(settings: &RunSettings) -> Result<(), WardError> {
    if let Some((path, marker)) = &settings.marker {
        crate::restore::write_marker(path, marker).map_err(|why| {
            WardError::Usage(format!(
                "cannot write the restore marker {}: {why}; nothing was run",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// Removes `restore.marker` once every step succeeded: a restore that
/// failed or was interrupted leaves it, so the system is not taken for
/// healthy.
fn remove_marker(settings: &RunSettings, outcome: &Outcome) {
    if let Some((path, _)) = &settings.marker
        && outcome.ending == execute::Ending::Succeeded
        && let Err(why) = crate::restore::remove_marker(path)
    {
        eprintln!("warning: the restore succeeded, but its marker stays: {why}; remove it by hand");
    }
}

/// Checks the playbook's preconditions (the caller holds the lease) and
/// prints what they found: every check at a terminal, the failed ones
/// otherwise. `None` when the playbook has none (then
/// `--skip-preconditions` has nothing to skip and is not recorded).
async fn preconditions(
    v: &Plan,
    run_id: &str,
    session: &StateSession,
    settings: &RunSettings,
) -> Result<Option<PreconditionsRecord>, WardError> {
    if v.preconditions.is_empty() {
        return Ok(None);
    }
    if settings.skip_preconditions {
        let record = PreconditionsRecord {
            skipped_by_operator: true,
            ..PreconditionsRecord::default()
        };
        let _ = crate::report::render_preconditions(
            &mut std::io::stderr(),
            &record,
            false,
            crate::report::Style::stderr(),
        );
        return Ok(Some(record));
    }
    let last = if preflight::needs_last_run(&v.preconditions) {
        match session.store.last_succeeded(&v.playbook.name.value).await? {
            None => preflight::LastRun::Never,
            Some(run) => {
                let attempts = session.store.attempts(&run.id, None).await?;
                preflight::LastRun::Found {
                    bytes: preflight::run_size(&attempts),
                    run_id: run.id,
                }
            }
        }
    } else {
        preflight::LastRun::NotNeeded
    };
    let log_dir = session.store.run_logs(run_id);
    let work_dir = work_dir(v);
    let ctx = preflight::Preflight {
        work_dir: &work_dir,
        log_dir: &log_dir,
        run_id,
        last,
    };
    // Blocking (a command, a connect), on the runtime's thread: nothing
    // else runs yet.
    let record = preflight::check_all(&v.preconditions, &ctx);
    let failed = record.skip_reason().is_some();
    if settings.echo_output {
        let _ = crate::report::render_preconditions(
            &mut std::io::stdout(),
            &record,
            false,
            crate::report::Style::stdout(),
        );
    } else if failed {
        let _ = crate::report::render_preconditions(
            &mut std::io::stderr(),
            &record,
            true,
            crate::report::Style::stderr(),
        );
    }
    Ok(Some(record))
}

/// Runs the executor for a run already recorded in the store (the caller
/// holds its lease).
async fn execute_recorded(
    v: &Plan,
    run_id: &str,
    start: Start,
    session: &mut StateSession,
    settings: &RunSettings,
    kill_grace: Duration,
    reporter: &mut dyn Reporter,
) -> Outcome {
    let exec = Execution {
        plan: v,
        run_id,
        start,
        options: ExecOptions {
            log_dir: session.store.run_logs(run_id),
            work_dir: work_dir(v),
            echo_output: settings.echo_output,
            kill_grace,
            state_flag: crate::report::state_flag(session.given.as_deref()),
            confirm: settings.confirm.clone(),
            // In the state folder, not beside the copies: a stamp there
            // would be hard-linked into every snapshot, or left in a
            // restored tree.
            copies_dir: Some(session.store.folder().join("copies")),
            item_notifier: settings.item_notifier.clone(),
        },
    };
    execute::execute(exec, session.store.as_mut(), reporter).await
}

/// Steps whose definition differs between the run and `v`, said in words;
/// a changed secret counts (through its keyed fingerprint). The plan's
/// fingerprint is taken in the version the run recorded, so that runs of
/// an older ward still resume.
pub fn changed_steps(
    v: &Plan,
    recorded: &[crate::state::StepRecord],
    store: &dyn Store,
) -> Result<Vec<recovery::StepChange>, WardError> {
    let key = key_if_needed(v, store.folder())?;
    // One ward records every step of a run, so one version for all of them;
    // a record in no known form compares in the current version (and so
    // counts as changed).
    let version = recorded
        .iter()
        .find_map(|r| fingerprint::recorded_version(&r.definition))
        .unwrap_or(fingerprint::VERSION);
    let Some(planned) = Fingerprint::in_version(v, key.as_ref(), version) else {
        return Ok(vec![recovery::StepChange::NewerWard {
            version,
            known: fingerprint::VERSION,
        }]);
    };
    Ok(recovery::changed_steps(&planned.steps, recorded))
}

/// The file in the state's private folder (`Store::folder`, beside an
/// SQLite database) that holds the fingerprint key.
const KEY_FILE: &str = "fingerprint.key";

/// The fingerprint key if some step has secret values (created on first
/// use, so state folders of playbooks without secrets do not get one).
fn key_if_needed(v: &Plan, folder: &Path) -> Result<Option<FingerprintKey>, WardError> {
    if !v.needs_fingerprint_key() {
        return Ok(None);
    }
    fingerprint_key(folder).map(Some)
}

/// Reads the fingerprint key in the state's private folder, creating it the
/// first time: 32 random bytes, mode 0600, owned by the user running ward.
/// Two first runs at once agree on one key (the file appears by `link`,
/// which never replaces).
pub fn fingerprint_key(folder: &Path) -> Result<FingerprintKey, WardError> {
    let path = folder.join(KEY_FILE);
    match read_key(&path) {
        Ok(key) => return Ok(key),
        Err(KeyProblem::Missing) => {}
        Err(KeyProblem::Bad(message)) => return Err(key_error(&path, message)),
    }
    create_key(&path).map_err(|e| key_error(&path, format!("cannot create it: {e}")))?;
    read_key(&path).map_err(|p| match p {
        KeyProblem::Missing => key_error(&path, "it vanished right after it was made".into()),
        KeyProblem::Bad(message) => key_error(&path, message),
    })
}

enum KeyProblem {
    Missing,
    Bad(String),
}

fn key_error(path: &Path, message: String) -> WardError {
    WardError::State(StateError::Key {
        path: path.to_path_buf(),
        message,
    })
}

fn read_key(path: &Path) -> Result<FingerprintKey, KeyProblem> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read;
    let fix = "move it aside; ward makes a new one (steps with secrets of earlier runs then count as changed on resume)";
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(KeyProblem::Missing),
        Err(rustix::io::Errno::LOOP) => {
            return Err(KeyProblem::Bad(format!("is a symbolic link; {fix}")));
        }
        Err(e) => return Err(KeyProblem::Bad(format!("cannot open it: {e}"))),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| KeyProblem::Bad(format!("cannot stat it: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(KeyProblem::Bad(format!("is not a regular file; {fix}")));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(KeyProblem::Bad(format!(
            "belongs to uid {}, not to the user running ward; {fix}",
            st.st_uid
        )));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(KeyProblem::Bad(format!(
            "can be read or written by other users (mode {:o}); {fix}",
            st.st_mode & 0o777
        )));
    }
    let mut bytes = [0u8; 32];
    let mut file = std::fs::File::from(fd);
    let mut rest = Vec::new();
    file.read_exact(&mut bytes)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(|e| KeyProblem::Bad(format!("cannot read 32 bytes from it ({e}); {fix}")))?;
    if !rest.is_empty() {
        return Err(KeyProblem::Bad(format!("is longer than 32 bytes; {fix}")));
    }
    Ok(FingerprintKey::from_bytes(bytes))
}

fn create_key(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    use std::io::{Read, Write};
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{KEY_FILE}.{}.{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let fd = rustix::fs::open(
        &temp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    // The umask can only take bits away; set exactly 0600 anyway.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
    let mut file = std::fs::File::from(fd);
    let written = file.write_all(&bytes).and_then(|()| file.sync_all());
    // Fails if another ward made the key first: then that one counts.
    let linked = written.and_then(
        |()| match crate::state::private::link_into_place(&temp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        },
    );
    let _ = std::fs::remove_file(&temp);
    linked?;
    std::fs::File::open(dir)?.sync_all()
}

/// Resumes a recorded run with the plan of its playbook (same vars and facts).
pub async fn resume(
    v: &Plan,
    run: &RunRecord,
    session: &mut StateSession,
    settings: &RunSettings,
    reporter: &mut dyn Reporter,
) -> Result<Outcome, WardError> {
    check_workers(v, session)?;
    let grace = kill_grace()?;
    let holder = holder(&run.id, session.store.as_ref());
    let lease = session
        .store
        .acquire_lease(&run.lock_name, &holder)
        .await
        .map_err(|lease| WardError::NotStarted {
            what: format!(
                "run {} of playbook `{}` not resumed",
                run.id, run.playbook_name
            ),
            lease: Box::new(lease),
        })?;
    // Our own run may be among the "running" ones if its process died.
    recovery::reclaim_crashed(session.store.as_mut(), &run.lock_name, "", now_ms()).await?;
    // Steps of a dead ward may still be running; stop them before their retry starts.
    let leftovers = execute::orphans::stop(&run.id, grace, &keeper(v));
    if leftovers > 0 {
        let note = Change::Note {
            kind: NoteKind::OrphansStopped,
            message: format!(
                "stopped {} left running by a dead ward",
                crate::report::count(leftovers, "process group")
            ),
            at: now_ms(),
        };
        session.store.apply(&run.id, vec![note]).await?;
    }
    let records = session.store.steps(&run.id).await?;
    let crashed = session
        .store
        .run(&run.id)
        .await?
        .is_some_and(|r| r.state == crate::state::RunState::Crashed);
    let mut resumption = recovery::resume_states(
        &v.recovery_shape(),
        &records,
        crashed,
        &session.store.host().boot_id,
        now_ms(),
    );
    resumption.changes.insert(
        0,
        Change::Resumed {
            pid: std::process::id(),
            host: holder.host.clone(),
            at: now_ms(),
        },
    );
    session
        .store
        .apply(&run.id, std::mem::take(&mut resumption.changes))
        .await?;
    for notice in &resumption.notices {
        eprintln!("note: {notice}");
    }
    let start = Start {
        initial: resumption.initial,
        flush_first: resumption.flush_first,
        resumed: true,
    };
    // A resumed restore is still one: its marker stays (or comes back).
    write_marker(settings)?;
    let outcome = execute_recorded(v, &run.id, start, session, settings, grace, reporter).await;
    remove_marker(settings, &outcome);
    // Only after the run's end is recorded.
    lease.release().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of runs started in the same second must not meet: 32 random
    /// bits (with 16, two of a hundred runs met about one time in 14).
    #[test]
    fn run_ids_carry_32_random_bits_and_are_wards_names() {
        let ids: std::collections::BTreeSet<String> =
            (0..100).map(|_| run_id_at("20261202-020000")).collect();
        assert_eq!(ids.len(), 100);
        for id in &ids {
            assert!(crate::state::retention::is_run_id(id), "{id}");
            let suffix = id.rsplit('-').next().expect("suffix");
            assert_eq!(suffix.len(), 8, "{id}");
        }
    }

    /// The state records the facts in its own type: its text must stay the
    /// text `RunFacts` has always been recorded as, and read back as it.
    #[test]
    fn recorded_facts_are_written_as_run_facts_and_read_back() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 2)
            .and_then(|d| d.and_hms_opt(4, 30, 0))
            .expect("date");
        let facts = RunFacts::new(now, "r1", std::path::Path::new("/srv/p.yml"));
        let recorded = recorded_facts(&facts);
        assert_eq!(
            serde_json::to_string(&recorded).expect("recorded"),
            serde_json::to_string(&facts).expect("facts")
        );
        let text = serde_json::to_string(&facts).expect("facts");
        let back: RecordedFacts = serde_json::from_str(&text).expect("back");
        assert_eq!(back, recorded);
        // A damaged record says what it always said.
        let damaged = serde_json::from_str::<RecordedFacts>("1").expect_err("damaged");
        let before = serde_json::from_str::<RunFacts>("1").expect_err("damaged");
        assert_eq!(damaged.to_string(), before.to_string());
    }
}
