//! `ward rehearse FILE`: the restore for real into a sandbox, checked,
//! then the sandbox torn down (`crate::rehearse` has the parts).

use std::io::Write;
use std::path::PathBuf;

use super::{OutputArgs, StateArgs, VarArgs, vars};
use crate::error::{WardError, exit};
use crate::execute::{Ending, Signals, StopSignal};
use crate::rehearse::{self, CheckResult, Sandbox, Verdict};
use crate::report::Style;
use crate::session::{self, RunSettings, StateSession};
use crate::state::{Access, Change, NoteKind};

/// Long help of `ward rehearse`.
pub(super) const HELP: &str = "\
A rehearsal restores for real into a sandbox: a private folder (under the
state folder's rehearse/, or --sandbox DIR) with a fresh folder for each
variable the playbook's `rehearse: { targets: [...] }` names, and a
PostgreSQL cluster of its own (listening on 127.0.0.1 only, trust only over
its socket inside the sandbox) for the variables of `rehearse.postgres`.
Every service.stop/service.start step, and each step in `rehearse.fence`,
is replaced by a check that its program exists; `verify` steps run the
read-only `ward verify`. Before anything runs, every other action step
must write only inside the sandbox and connect only to its cluster (else
the rehearsal is refused, naming the step); run:/cmd: steps run as written
and are named on stderr as NOT fenced. Sandboxes left by a killed ward in
the same folder are cleaned first. The run is recorded like any other, under the lock
`<lock>.rehearse`, so it never holds off a backup.

After the run: the restored folders are compared with the snapshot's
manifest, each restored table's row count with its dump, and the
playbook's `rehearse.checks` are made. The sandbox is then removed (also
on SIGINT/SIGTERM), unless --keep.

Exit status: 0 when the run succeeded and every check passed; 1 otherwise
(the failed check or step says why); 2 for a playbook without `rehearse:`,
a --var that names a sandbox variable, a step that would reach outside the
sandbox, a --sandbox inside production or under another user's folder, or
a sandbox that cannot be made;
3 when another rehearsal holds the lock; 6 when a precondition failed;
128+N after signal N (the sandbox is torn down first).

Examples:
  ward rehearse playbooks/fossology/restore-full.yml --snapshot latest
  ward rehearse restore.yml --json > rehearsal.json";

/// `ward rehearse` arguments.
#[derive(Debug, clap::Args)]
pub(super) struct RehearseArgs {
    /// Playbook file (a restore playbook with a `rehearse:` section).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Make the sandbox in this folder (created 0700 if missing; it must be
    /// yours and closed to others) instead of the state folder's rehearse/.
    #[arg(long, value_name = "DIR")]
    sandbox: Option<PathBuf>,
    /// Leave the sandbox's folders in place (the cluster is stopped) and
    /// print where they are.
    #[arg(long)]
    keep: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// The snapshot to rehearse: `latest`, a date, a snapshot's folder
    /// name or a path (playbooks with `restore:`; as `ward run --snapshot`).
    #[arg(long, value_name = "latest|DATE|NAME|PATH")]
    snapshot: Option<String>,
    #[command(flatten)]
    report: super::ReportFileArgs,
}

/// How the rehearsal ended.
struct Ended {
    run_id: String,
    ending: Option<Ending>,
    checks: Vec<CheckResult>,
    stopped: Option<StopSignal>,
    sandbox: PathBuf,
    /// The cluster's folder when it is apart from the sandbox (as root).
    cluster_dir: Option<PathBuf>,
    kept: bool,
    fenced: Vec<rehearse::Fenced>,
    /// `run:`/`cmd:` steps that ran as written (their writes are unknown).
    unfenced: Vec<String>,
    teardown: Vec<String>,
}

pub(super) fn rehearse(args: &RehearseArgs) -> Result<i32, WardError> {
    let mut given = vars::parse(&args.vars.vars)?;
    let run_id = session::new_run_id();
    let shown = args.file.display().to_string();
    let checked = crate::check_file(&args.file, &given, &run_id)?;
    let first = match super::checked::plan_or_exit(checked, &shown, "; nothing was rehearsed") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(r) = first.playbook.rehearse.clone() else {
        return Err(WardError::Usage(format!(
            "{shown}: playbook `{}` has no `rehearse:` section, so ward cannot tell which \
             variables are restore targets; add one such as `rehearse: {{ targets: [dest_dir], \
             postgres: {{ host: pg_host, port: pg_port }} }}` (docs/playbook.md, \"Rehearse\")",
            first.playbook.name.value
        )));
    };
    // `--snapshot`, as `ward run` reads it (no pick from a list: a
    // rehearsal runs from cron); it sets the restore's snapshot variable.
    let mut chosen = None;
    if let Some(wanted) = &args.snapshot {
        let Some(restore) = &first.restore else {
            return Err(WardError::Usage(format!(
                "{shown}: --snapshot is for playbooks with `restore:`, and playbook `{}` has \
                 none; set the snapshot with --var",
                first.playbook.name.value
            )));
        };
        let dir = PathBuf::from(&first.facts.playbook_dir).join(&restore.spec.snapshots);
        // A PATH is the operator's (relative to where ward runs).
        let wanted = match wanted.contains('/') {
            true => std::fs::canonicalize(wanted)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| wanted.clone()),
            false => wanted.clone(),
        };
        let c = crate::restore::choose(&dir, &wanted)?;
        let var = restore.spec.snapshot_var.clone();
        given.retain(|(k, _)| *k != var);
        given.push((var, c.path.display().to_string()));
        chosen = Some(format!("restoring {}", c.line()));
    }
    // Where the targets are in production, to keep the sandbox out of them.
    let production: Vec<(String, PathBuf)> = r
        .targets
        .iter()
        .filter_map(|t| {
            let v = first.vars.get(&t.value)?.as_str()?;
            let dir = PathBuf::from(&first.facts.playbook_dir).join(v);
            Some((t.value.clone(), rehearse::guard::lexical(&dir)))
        })
        .collect();
    drop(first);
    let report_to = super::report::ReportTarget::from_args(&args.report)?;
    rehearse::refuse_sandbox_vars(&r, &given).map_err(|e| WardError::Usage(e.to_string()))?;
    let ward = std::env::current_exe().map_err(|e| {
        WardError::Usage(format!(
            "cannot find this ward program for `ward verify`: {e}"
        ))
    })?;
    let ended = session::block_on(async {
        // From here on SIGINT/SIGTERM no longer kill ward: they are seen
        // between the phases, and the sandbox is torn down in any case.
        let mut signals = Signals::install().map_err(WardError::Output)?;
        let mut state = StateSession::open(args.state.state.as_deref(), Access::Create).await?;
        let parent = match &args.sandbox {
            // Absolute: the steps resolve relative paths against the
            // playbook's folder, not against where ward was started.
            Some(dir) => std::path::absolute(dir)
                .map_err(|e| WardError::Usage(format!("--sandbox {}: {e}", dir.display())))?,
            None => state.store.folder().join("rehearse"),
        };
        // A sandbox inside a production target would put the rehearsal's
        // folders (and its teardown) into the data it must not touch.
        if let Some((var, dir)) = production
            .iter()
            .find(|(_, dir)| canon(&parent).starts_with(canon(dir)))
        {
            return Err(WardError::Usage(format!(
                "the sandbox folder {} is inside the production folder {} of target `{var}`; \
                 give --sandbox a folder outside it",
                parent.display(),
                dir.display()
            )));
        }
        // A --sandbox folder is the operator's choice (exit 2 when others
        // could change it); the state folder's own is a state problem.
        // An existing --sandbox folder is checked, never changed (it may be
        // a folder in use: making it 0700 would change it); a missing one
        // is made 0700. Its ancestors must be safe too: a folder another
        // user can write could have the sandbox swapped for a link.
        if args.sandbox.is_some()
            && let Some(why) = unsafe_ancestor(&parent)
        {
            return Err(WardError::Usage(format!(
                "--sandbox {}: {why}",
                parent.display()
            )));
        }
        let made = match (&args.sandbox, std::fs::symlink_metadata(&parent)) {
            (Some(_), Ok(_)) => crate::state::private::check_dir(&parent, "rehearsal folder"),
            _ => crate::state::private::ensure_dir(&parent, "rehearsal folder"),
        };
        made.map_err(|e| {
            if args.sandbox.is_some() {
                WardError::Usage(format!("--sandbox: {e}"))
            } else {
                WardError::from(e)
            }
        })?;
        // Sandboxes of rehearsals whose ward was killed (no teardown ran):
        // their cluster would otherwise run on forever.
        for line in rehearse::sandbox::sweep(&parent) {
            eprintln!("{}: {line}", Style::stderr().error("note"));
        }
        let name = format!("{}-{run_id}", r_name(&args.file));
        let targets: Vec<String> = r.targets.iter().map(|t| t.value.clone()).collect();
        let mut sandbox =
            Sandbox::create(&parent, &name, &targets, r.postgres.is_some(), args.keep).map_err(
                |e| WardError::Usage(format!("cannot make the rehearsal's sandbox: {e}")),
            )?;
        let mut ended = Ended {
            run_id: run_id.clone(),
            ending: None,
            checks: Vec::new(),
            stopped: pending(&mut signals).await,
            sandbox: sandbox.root.clone(),
            cluster_dir: sandbox
                .cluster
                .as_ref()
                .filter(|c| !c.dir.starts_with(&sandbox.root))
                .map(|c| c.dir.clone()),
            kept: args.keep,
            fenced: Vec::new(),
            unfenced: Vec::new(),
            teardown: Vec::new(),
        };
        if ended.stopped.is_none() {
            let all = rehearse::overrides(&r, &sandbox, &given)
                .map_err(|e| WardError::Usage(e.to_string()))?;
            let checked = crate::check_file(&args.file, &all, &run_id)?;
            let mut plan =
                match super::checked::plan_or_exit(checked, &shown, "; nothing was rehearsed") {
                    Ok(v) => v,
                    Err(code) => return Ok(Err(code)),
                };
            ended.fenced = rehearse::fence(&mut plan, &r, &ward);
            let guarded = rehearse::guard::check(&plan, &sandbox, &ended.fenced);
            ended.unfenced = guarded.unfenced.clone();
            // Said on stderr even with --quiet/--json: these steps run as
            // written and ward cannot know what they write.
            for id in &ended.unfenced {
                eprintln!(
                    "{}: rehearsal: step `{id}` is a run:/cmd: step and is NOT fenced: it runs \
                     as written and may touch production (list it in `rehearse.fence` to \
                     replace it by a check)",
                    Style::stderr().error("warning")
                );
            }
            // Nothing has run yet: a step that would write outside the
            // sandbox refuses the whole rehearsal here.
            if !guarded.escapes.is_empty() {
                let mut msg = format!(
                    "{shown}: the rehearsal would reach outside its sandbox, so nothing was run:"
                );
                for e in &guarded.escapes {
                    msg.push_str(&format!("\n  step `{}`: {}", e.step, e.why));
                }
                msg.push_str("\n(docs/playbook.md, \"Rehearse\")");
                return Err(WardError::Usage(msg));
            }
            if !args.json && !args.output.quiet {
                println!("rehearsal of {shown} in {}", sandbox.root.display());
                for f in &ended.fenced {
                    println!("  fenced: step `{}` runs {} instead", f.id, f.instead);
                }
            }
            let (mut reporter, mut settings) = reporter(&args.output, args.json, &args.state);
            if let Some(c) = &chosen {
                settings.notes.push((NoteKind::SnapshotChosen, c.clone()));
            }
            settings.notes.push((
                NoteKind::Rehearsal,
                rehearsal_note(&sandbox.root, &ended.fenced),
            ));
            let outcome = session::start(
                &plan,
                &run_id,
                &all,
                &mut state,
                &settings,
                reporter.as_mut(),
                None,
            )
            .await?;
            ended.ending = Some(outcome.ending);
            match outcome.ending {
                Ending::Interrupted(s) | Ending::Abandoned(s) => ended.stopped = Some(s),
                _ => {
                    let ran = outcome.ending == Ending::Succeeded;
                    ended.checks = rehearse::checks::run_all(&plan, &r, &sandbox, ran);
                    ended.stopped = pending(&mut signals).await;
                }
            }
            // The checks go with the run, so that `ward report` of a
            // rehearsal is its evidence; a failure to record them is said
            // and does not change the verdict printed below.
            if let Err(e) = record_checks(&mut state, &run_id, &ended.checks).await {
                eprintln!(
                    "warning: the rehearsal's checks could not be recorded with run {run_id}: {e}"
                );
            }
            if let Some(target) = &report_to {
                super::report::write_after_run(state.store.as_ref(), &run_id, target).await;
            }
        }
        ended.teardown = sandbox.tear_down();
        Ok::<_, WardError>(Ok(ended))
    })??;
    let ended = match ended {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    report(args, &ended)
}

/// The `rehearsal` note recorded as the run starts.
fn rehearsal_note(sandbox: &std::path::Path, fenced: &[rehearse::Fenced]) -> String {
    let mut note = format!("rehearsal in sandbox {}", sandbox.display());
    if !fenced.is_empty() {
        let list: Vec<String> = fenced.iter().map(|f| format!("`{}`", f.id)).collect();
        note.push_str(&format!(
            "; fenced steps (a check ran instead): {}",
            list.join(", ")
        ));
    }
    note
}

/// Records each check's verdict with the run (one transaction).
async fn record_checks(
    state: &mut StateSession,
    run_id: &str,
    checks: &[CheckResult],
) -> Result<(), crate::state::StateError> {
    if checks.is_empty() {
        return Ok(());
    }
    let at = crate::clock::wall_ms();
    let changes = checks
        .iter()
        .map(|c| Change::Note {
            kind: NoteKind::RehearsalCheck,
            message: format!("{} {}: {}", c.verdict.as_str(), c.name, c.detail),
            at,
        })
        .collect();
    state.store.apply(run_id, changes).await
}

/// `path` with links resolved in its longest part that exists (the rest,
/// to be made, taken lexically).
fn canon(path: &std::path::Path) -> PathBuf {
    let path = rehearse::guard::lexical(path);
    for a in path.ancestors() {
        if let Ok(real) = std::fs::canonicalize(a) {
            let rest = path.strip_prefix(a).unwrap_or(std::path::Path::new(""));
            return real.join(rest);
        }
    }
    path
}

/// Why the way to `dir` is not safe to make a sandbox under: a folder on
/// it belongs to another user (not root), or others may write it without
/// the sticky bit, so they could replace what lies below with a link.
/// A way that is still to be made (missing folders) is not a refusal here.
fn unsafe_ancestor(dir: &std::path::Path) -> Option<String> {
    use crate::fs::trust::Untrusted;
    match crate::fs::trust::resolve(dir, false) {
        Ok(_) | Err(Untrusted::Missing { .. }) => None,
        Err(Untrusted::Owner {
            path, link: true, ..
        }) => Some(format!("{} is a link of another user", path.display())),
        Err(Untrusted::Owner { path, uid, .. }) => Some(format!(
            "{} belongs to another user ({}), who could swap the sandbox for a link; \
             choose a folder of your own",
            path.display(),
            crate::state::private::describe_uid(uid)
        )),
        Err(Untrusted::OpenToOthers { path, .. }) => Some(format!(
            "{} is writable by others (and not sticky), who could swap the sandbox for a \
             link; choose a folder of your own",
            path.display()
        )),
        Err(other) => Some(other.to_string()),
    }
}

/// The playbook's file name without extension, for the sandbox's name.
fn r_name(file: &std::path::Path) -> String {
    file.file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect()
        })
        .unwrap_or_else(|| "playbook".into())
}

/// A signal that arrived while ward was busy with something blocking.
async fn pending(signals: &mut Signals) -> Option<StopSignal> {
    tokio::select! {
        biased;
        s = signals.recv() => Some(s),
        () = std::future::ready(()) => None,
    }
}

fn reporter(
    output: &OutputArgs,
    json: bool,
    state: &StateArgs,
) -> (Box<dyn crate::execute::Reporter>, RunSettings) {
    let settings = RunSettings {
        echo_output: output.progress && !json,
        skip_preconditions: false,
        // A rehearsal touches only its sandbox: its `confirm:` questions
        // are answered yes (recorded so), nobody is asked.
        confirm: crate::execute::confirm::ConfirmSetup::new(
            true,
            vec!["a rehearsal, in its sandbox".to_owned()],
        ),
        notes: Vec::new(),
        // Never the production marker: a rehearsal leaves the real system
        // as it found it.
        marker: None,
        item_notifier: None,
    };
    if output.progress && !json {
        let shown = crate::report::ProgressReporter::new(std::io::stdout(), Style::stdout())
            .with_state(state.state.as_deref())
            .periodic(crate::report::plain_every());
        (Box::new(shown), settings)
    } else {
        (
            Box::new(
                crate::report::QuietReporter::new(std::io::stderr())
                    .with_state(state.state.as_deref()),
            ),
            settings,
        )
    }
}

fn report(args: &RehearseArgs, e: &Ended) -> Result<i32, WardError> {
    let failed_checks = e
        .checks
        .iter()
        .filter(|c| c.verdict != Verdict::Passed)
        .count();
    let code = match (e.stopped, e.ending) {
        (Some(s), _) => super::signal_code(s),
        (None, Some(Ending::Succeeded)) if failed_checks == 0 => exit::OK,
        (None, Some(Ending::StateLost)) => exit::STATE,
        (None, Some(Ending::Skipped)) => exit::SKIPPED,
        _ => exit::FAILED,
    };
    let reason = match (e.stopped, e.ending) {
        (Some(s), _) => format!("stopped by {s}"),
        (None, Some(Ending::Succeeded)) if failed_checks == 0 => "the restore works".into(),
        (None, Some(Ending::Succeeded)) => {
            format!("{failed_checks} check(s) failed")
        }
        (None, Some(Ending::Skipped)) => "a precondition was not met; nothing ran".into(),
        (None, Some(_)) => format!(
            "the restore failed (see `ward status{} {}`)",
            crate::report::state_flag(args.state.state.as_deref()),
            e.run_id
        ),
        (None, None) => "not run".into(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "run_id": e.run_id,
            "ok": code == exit::OK,
            "run": match e.ending {
                Some(Ending::Succeeded) => "succeeded",
                Some(Ending::Failed | Ending::ItemsFailed) => "failed",
                Some(Ending::StateLost) => "state-lost",
                Some(Ending::Skipped) => "skipped",
                Some(Ending::NotConfirmed) => "not-confirmed",
                Some(Ending::Interrupted(_) | Ending::Abandoned(_)) => "interrupted",
                None => "not-run",
            },
            "reason": reason,
            "fenced": e.fenced.iter().map(|f| serde_json::json!({"step": f.id, "instead": f.instead})).collect::<Vec<_>>(),
            "not_fenced": e.unfenced,
            "checks": e.checks,
            "sandbox": e.sandbox,
            "cluster_dir": e.cluster_dir,
            "kept": e.kept,
            "teardown_problems": e.teardown,
        });
        serde_json::to_writer_pretty(&mut out, &value).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        let style = Style::stdout();
        if !e.checks.is_empty() {
            writeln!(out, "checks:")?;
            let width = e.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &e.checks {
                let padded = format!("{:<8}", c.verdict.as_str());
                let verdict = match c.verdict {
                    Verdict::Passed => style.bold(&padded),
                    _ => style.error(&padded),
                };
                writeln!(out, "  {verdict} {:<width$}  {}", c.name, c.detail)?;
            }
        }
        if e.kept {
            writeln!(
                out,
                "sandbox kept in {} (its cluster is stopped)",
                e.sandbox.display()
            )?;
        }
        let word = if code == exit::OK {
            style.bold("rehearsal passed")
        } else {
            style.error("rehearsal failed")
        };
        writeln!(out, "{word}: run {}: {reason}", e.run_id)?;
    }
    for p in &e.teardown {
        eprintln!("{}: {p}", Style::stderr().error("warning"));
    }
    Ok(code)
}
