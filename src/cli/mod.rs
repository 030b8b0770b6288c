//! The command line: one file per command, each returning an exit code.

mod actions;
mod check;
mod checked;
mod completions;
mod cron;
mod due;
mod help;
mod inspect;
mod items;
mod man;
mod next;
mod pause;
mod plan;
mod probe;
mod prune;
mod rehearse;
mod report;
mod run;
mod schema;
mod systemd;
mod validate;
pub mod vars;
mod verbosity;
mod verify;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{WardError, exit};
use crate::execute::{Ending, StopSignal};
use crate::report::Style;

/// Runs declarative backup and restore playbooks.
#[derive(Debug, Parser)]
#[command(name = "ward", version = help::LONG_VERSION, about, long_about = None, propagate_version = true)]
#[command(after_long_help = help::top_level())]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print ward's decisions to stderr: -v why steps are skipped or not redone,
    /// the state and lock used, preconditions, schedule; -vv more detail.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check playbooks and report every problem with file:line:column.
    Validate(ValidateArgs),
    /// Show the DAG ward would run, after templating; nothing is executed.
    #[command(after_long_help = help::PLAN)]
    Plan(PlanArgs),
    /// Check every step against the real system, read-only: programs, folders,
    /// free space, PostgreSQL, snapshots, what each copy would change (a dry run).
    #[command(after_long_help = probe::HELP)]
    Probe(ProbeArgs),
    /// Run a playbook: the DAG with a durable checkpoint per step.
    #[command(after_long_help = help::RUN)]
    Run(RunArgs),
    /// Continue a failed, interrupted or crashed run without redoing finished steps.
    #[command(after_long_help = help::RESUME)]
    Resume(ResumeArgs),
    /// Restore for real into a sandbox (own PostgreSQL, temporary folders), check, tear down.
    #[command(after_long_help = rehearse::HELP)]
    Rehearse(rehearse::RehearseArgs),
    /// Show a run's steps: state, attempts, duration, exit code, log.
    Status(StatusArgs),
    /// List recorded runs, newest first.
    Runs(RunsArgs),
    /// Print the output of a run's steps.
    Log(LogArgs),
    /// List the items of a run's `for_each` steps: state, attempts, exit code.
    Items(ItemsArgs),
    /// Hold back pending items of a run (by key) so that no ward starts them.
    #[command(after_long_help = PAUSE_HELP)]
    Pause(PauseArgs),
    /// Let paused items of a run run again.
    #[command(after_long_help = PAUSE_HELP)]
    Unpause(PauseArgs),
    /// Run failed items of a run again (while the run goes on, or at its resume).
    #[command(after_long_help = PAUSE_HELP)]
    Retry(RetryArgs),
    /// Run the items of `workers:` steps, claimed from a shared PostgreSQL state.
    #[command(after_long_help = WORKER_HELP)]
    Worker(WorkerArgs),
    /// Write a run's report (steps, timings, checks, notes) as Markdown, HTML with a timeline, or JSON.
    #[command(after_long_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Check a backup set against its manifest: missing, changed, truncated, extra files.
    Verify(VerifyArgs),
    /// Alarm for stale backups: exit 7 if a playbook's last success is older than its `max_age`.
    Check(CheckArgs),
    /// Show when a playbook's `schedule:` fires next.
    Next(NextArgs),
    /// Manage ward's block in your crontab: install, list, remove or print lines.
    Cron(CronArgs),
    /// Print a systemd .service and .timer for a playbook's schedule.
    Systemd(SystemdArgs),
    /// Remove old runs and their logs by each playbook's `history:` policy.
    Prune(PruneArgs),
    /// Print the JSON Schema of the playbook format.
    Schema,
    /// List the built-in actions.
    Actions(ActionsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print ward's manual page (roff), or write one page per command into a folder.
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
struct ManArgs {
    /// Write ward.1 and ward-COMMAND.1 into this folder (created if missing)
    /// instead of printing ward.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `--var name=value`, repeatable.
#[derive(Debug, clap::Args)]
struct VarArgs {
    /// Set a template variable, overriding `vars:` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Playbook files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    vars: VarArgs,
    /// Output format (default: human).
    #[arg(long, value_enum)]
    format: Option<DiagnosticFormat>,
    /// Print JSON: the same as `--format json`.
    #[arg(long)]
    json: bool,
    /// Print nothing for valid files.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiagnosticFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Playbook file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    /// Output format (default: text).
    #[arg(long, value_enum)]
    format: Option<PlanFormat>,
    /// Print JSON: the same as `--format json`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    snapshot: SnapshotArgs,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Playbook file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    /// Print JSON: every check, and for each copy every path it would change.
    #[arg(long)]
    json: bool,
    /// After the table, list every path each copy would restore (+), replace (~) or delete (-).
    #[arg(long, conflicts_with = "json")]
    list: bool,
}

/// Where the run state lives.
#[derive(Debug, clap::Args)]
struct StateArgs {
    /// State database (default: $WARD_STATE, else /var/lib/ward/ward.db for root,
    /// else $XDG_STATE_HOME/ward/ward.db).
    #[arg(long = "state", value_name = "PATH")]
    state: Option<PathBuf>,
}

/// How much a run prints.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// Show progress and step output even when not at a terminal.
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// Print only failures, even at a terminal (the default without one, e.g. under cron).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Playbook file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Run without checking the playbook's `preconditions:` (recorded with the run).
    #[arg(long)]
    skip_preconditions: bool,
    /// Run only if the schedule's last slot has no successful run yet
    /// (catch-up from cron; needs `schedule:`); otherwise exit 0.
    #[arg(long)]
    if_due: bool,
    /// Start at once, without the playbook's `jitter:` delay.
    #[arg(long)]
    no_jitter: bool,
    #[command(flatten)]
    report: ReportFileArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    #[command(flatten)]
    snapshot: SnapshotArgs,
    /// Go on although this restore guard refuses the snapshot (`host`,
    /// `postgres`, `playbook`, `scope`, `format`); repeatable; recorded.
    #[arg(long = "override", value_name = "GUARD")]
    overrides: Vec<String>,
}

/// `confirm:` steps.
#[derive(Debug, clap::Args)]
struct ConfirmArgs {
    /// Answer every `confirm:` question with yes, without a terminal
    /// (recorded with the run, with who gave it).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// A restore's snapshot (`restore:` playbooks).
#[derive(Debug, clap::Args)]
struct SnapshotArgs {
    /// The snapshot to restore: `latest`, a date (`2026-12-01`), a
    /// snapshot's folder name, or a path to a snapshot folder. At a
    /// terminal without it, ward lists the snapshots to pick from.
    #[arg(long, value_name = "latest|DATE|NAME|PATH")]
    snapshot: Option<String>,
}

/// `--report FILE` of `ward run` and `ward resume`.
#[derive(Debug, clap::Args)]
pub(super) struct ReportFileArgs {
    /// When the run ends, however it ends, write its report to FILE (format from
    /// the extension: .md, .html, .json). A report that cannot be written is a
    /// warning; the exit code stays the run's.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The report's format, whatever FILE's extension.
    #[arg(long, value_enum, value_name = "FORMAT", requires = "report")]
    report_format: Option<ReportFormatArg>,
}

/// The forms of a run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormatArg {
    /// Markdown.
    Md,
    /// One self-contained HTML file with a timeline picture.
    Html,
    /// JSON (docs/cli.md, "JSON output").
    Json,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The run (`last` for the most recent one; see `ward runs`).
    #[arg(
        value_name = "RUN_ID",
        required_unless_present = "last",
        conflicts_with = "last"
    )]
    run_id: Option<String>,
    /// The most recent run.
    #[arg(long)]
    last: bool,
    /// Output format (default: md, or from --output's extension).
    #[arg(long, value_enum)]
    format: Option<ReportFormatArg>,
    /// Write the report to FILE (temp name, fsync, rename) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
}

const REPORT_HELP: &str = "\
A report is read from the state database alone: any recorded run has one,
also when the playbook has changed since. It holds the playbook, host, run
id, state, times, variables (secrets masked), preconditions, every step with
its attempts, exit codes, durations, reasons and the action's details
(snapshot names, transfer counts), and the run's events under \"Guards,
confirmations and notes\".

The HTML report is one self-contained file (inline CSS and SVG, no script,
nothing loaded from elsewhere) with a timeline picture: a bar per attempt on
a time axis from the run's start, attempts that ran at once side by side,
and the services' downtime shaded (from the first service.stop step to the
end of the service.start step after it).

Examples:
  ward report last
  ward report 20261202-040000-1a2b3c4d --format html -o evidence.html
  ward run restore.yml --report restore-report.html";

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The run to resume (see `ward runs`).
    #[arg(
        value_name = "RUN_ID",
        required_unless_present = "last",
        conflicts_with = "last"
    )]
    run_id: Option<String>,
    /// Resume the most recent run.
    #[arg(long)]
    last: bool,
    /// Resume even though the playbook changed since the run started.
    #[arg(long)]
    allow_changed: bool,
    /// Give again a `--var` whose value was a secret (not recorded).
    #[command(flatten)]
    vars: VarArgs,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    report: ReportFileArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The run (default: the most recent one).
    #[arg(value_name = "RUN_ID")]
    run_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, clap::Args)]
struct RunsArgs {
    /// Only runs of this playbook (its `name:`).
    #[arg(long)]
    playbook: Option<String>,
    /// Only runs in this state (repeatable, or comma-separated): running,
    /// succeeded, failed, interrupted, crashed, skipped, missed.
    #[arg(long = "status", value_name = "STATE", value_delimiter = ',')]
    status: Vec<String>,
    /// Only runs started at or after this: a date (`2026-12-01`, local
    /// midnight), an RFC 3339 time, or an age (`7d`, `24h`, `30m`).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only runs started before this (same forms as `--since`; a date means
    /// its local midnight, so `--until 2026-12-02` ends with Dec 1).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The run (`last` for the most recent one).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Only this step.
    #[arg(value_name = "STEP")]
    step: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "follow")]
    json: bool,
    /// Keep printing the step's output as it grows, until the step ends
    /// (like `tail -f`; needs STEP).
    #[arg(long, short = 'f', requires = "step")]
    follow: bool,
    #[command(flatten)]
    state: StateArgs,
}

const PAUSE_HELP: &str = "\
ITEM is an item's key (`ward items RUN_ID` lists them); --step says which
step's item when keys repeat across steps. These commands do not take the
run's lock: use them while the run goes on (its ward notices within about
0.2 s, before it starts more items) or before `ward resume`.

  pause    pending -> paused: no ward starts it until `ward unpause`. A
           running item is not stopped (refused, exit 1). When only paused
           items are left, the step ends failed and the run exits 10.
  unpause  paused -> pending: the running ward starts it if its step still
           runs items; otherwise `ward resume RUN_ID` does.
  retry    failed -> pending (its attempts are kept), likewise.

Exit: 0 each item was changed (or already was so); 1 some item was in
another state (said, the others are changed); 2 an unknown run or item,
or a key found in several steps without --step (nothing is changed).";

const WORKER_HELP: &str = "\
A `for_each` step with `workers:` is not run by the run's ward: that ward
lists the items and waits, and `ward worker`s on this host or others claim
them from the shared state (highest `priority` first), each up to the
step's `max_parallel` at once, and record how each ended.

A worker reads the run's playbook from the path the run recorded, with the
run's variables (secrets given again with --var, or from their sources
here), and refuses a step that differs from the run's. It holds a lease
(60s, renewed every 10s); an item claimed by a worker whose lease ran out
(a crash, a lost host) is claimed by another, its attempt counted. Every
claim and release is recorded with host and pid.

A first SIGTERM/SIGINT stops claiming and stops the items running here
(they go back to pending for other workers); a second kills them.

Exit: 0 when --run's run has ended; 128+N after signal N; 4 when the
lease was lost (the state could not be reached for half the lease);
2 for a local (SQLite) state or bad options.

Examples:
  ward worker --state postgres://ward@db/ward --run 20261203-040000-1a2b3c4d
  ward worker --state postgres://ward@db/ward --tag lustre --max-parallel 8";

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Only this run's items; the worker ends when the run has ended
    /// (without it the worker serves every run until stopped).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// A tag this worker carries (repeatable): it also claims items of
    /// steps whose `workers: {tags: [...]}` it all carries.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// At most N items at once over all steps (each step's own
    /// `max_parallel` limits it too).
    #[arg(long, value_name = "N")]
    max_parallel: Option<usize>,
    /// Give again a `--var` whose value was a secret (not recorded).
    #[command(flatten)]
    vars: VarArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// The items `ward pause|unpause|retry` change.
#[derive(Debug, clap::Args)]
struct PauseArgs {
    /// The run (`last` for the most recent one).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// The items' keys.
    #[arg(value_name = "ITEM", required = true)]
    items: Vec<String>,
    /// Only items of this step (for keys that repeat across steps).
    #[arg(long, value_name = "STEP")]
    step: Option<String>,
    #[command(flatten)]
    state: StateArgs,
}

/// `ward retry`: items by key, or every failed one.
#[derive(Debug, clap::Args)]
struct RetryArgs {
    /// The run (`last` for the most recent one).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// The items' keys.
    #[arg(value_name = "ITEM", required_unless_present = "all_failed")]
    items: Vec<String>,
    /// Only items of this step (for keys that repeat across steps).
    #[arg(long, value_name = "STEP")]
    step: Option<String>,
    /// Every failed item of the run (or of --step).
    #[arg(long)]
    all_failed: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// What [`pause::control`] is asked to change.
struct ControlArgs {
    run_id: String,
    items: Vec<String>,
    step: Option<String>,
    all_failed: bool,
    state: StateArgs,
}

impl From<PauseArgs> for ControlArgs {
    fn from(a: PauseArgs) -> ControlArgs {
        ControlArgs {
            run_id: a.run_id,
            items: a.items,
            step: a.step,
            all_failed: false,
            state: a.state,
        }
    }
}

impl From<RetryArgs> for ControlArgs {
    fn from(a: RetryArgs) -> ControlArgs {
        ControlArgs {
            run_id: a.run_id,
            items: a.items,
            step: a.step,
            all_failed: a.all_failed,
            state: a.state,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ItemsArgs {
    /// The run (`last` for the most recent one).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Only items in this state: pending, running, succeeded, failed,
    /// skipped, paused (`--status`, as for `ward runs`: `--state` names the state
    /// database).
    #[arg(long = "status", value_name = "S")]
    status: Option<String>,
    /// Only the items of this step.
    #[arg(long, value_name = "STEP")]
    step: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The backup set (a snapshot folder, or the `latest` link); with
    /// `--status`, the snapshots folder.
    #[arg(value_name = "SET")]
    set: PathBuf,
    /// The manifest (default: `.NAME.manifest.json` next to SET, else a legacy SET/manifest.json).
    #[arg(long, conflicts_with = "status")]
    manifest: Option<PathBuf>,
    /// How much content to re-hash: `all` (default), `1/N` (one slice of N,
    /// the one the folder's verify history, else the date, points at), or `none`.
    #[arg(long, value_name = "all|1/N|none", conflicts_with_all = ["no_hashes", "status"])]
    read: Option<String>,
    /// Same as `--read none`: structure, sizes and modes only.
    #[arg(long, conflicts_with = "status")]
    no_hashes: bool,
    /// Show what the last verify of each snapshot in the folder SET found
    /// (level, when, passed or not, and per slice when it was last read).
    #[arg(long)]
    status: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Playbook names or files (default: every playbook whose newest run recorded a `max_age`).
    #[arg(value_name = "PLAYBOOK")]
    playbooks: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, clap::Args)]
struct NextArgs {
    /// Playbook file.
    #[arg(value_name = "PLAYBOOK")]
    file: PathBuf,
    /// How many fire times to show.
    #[arg(short = 'n', long = "count", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    count: u16,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ActionsArgs {
    /// Print JSON: each action with its parameters.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CronArgs {
    /// What to do with ward's block in this user's crontab.
    #[arg(value_enum)]
    action: CronAction,
    /// Playbook files (`list` and `remove` without any: every playbook in the block).
    #[arg(value_name = "PLAYBOOK")]
    playbooks: Vec<PathBuf>,
    /// State database to write into each line (`--state PATH`; cron jobs do not see $WARD_STATE).
    #[arg(long = "state", value_name = "PATH")]
    state: Option<PathBuf>,
    /// Print JSON (`list` and `print`): `[{"playbook", "line"}]`.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CronAction {
    /// Add or replace each playbook's line (other lines are kept).
    Install,
    /// Show the lines ward installed.
    List,
    /// Remove the playbooks' lines (all of ward's without a playbook).
    Remove,
    /// Print the block for these playbooks; changes nothing.
    Print,
}

impl CronAction {
    fn name(self) -> &'static str {
        match self {
            CronAction::Install => "install",
            CronAction::List => "list",
            CronAction::Remove => "remove",
            CronAction::Print => "print",
        }
    }
}

#[derive(Debug, clap::Args)]
struct SystemdArgs {
    /// Only `print` (to stdout; ward installs no unit files).
    #[arg(value_enum)]
    action: SystemdAction,
    /// Playbook file.
    #[arg(value_name = "PLAYBOOK")]
    file: PathBuf,
    /// State database to write into `ExecStart=`.
    #[arg(long = "state", value_name = "PATH")]
    state: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SystemdAction {
    /// Print the .service and the .timer.
    Print,
}

#[derive(Debug, clap::Args)]
struct PruneArgs {
    /// Remove nothing; print what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Only runs of this playbook (its `name:`); logs of runs no longer
    /// recorded are then left for a `ward prune` without it.
    #[arg(long)]
    playbook: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Dot,
    Mermaid,
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A closed stderr or stdout must not hide the code.
            let _ = e.print();
            // --help and --version "fail" to parse, on stdout.
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    verbosity::init(cli.verbose);
    let result = match cli.command {
        Command::Validate(args) => validate::validate(&args),
        Command::Plan(args) => plan::plan(&args),
        Command::Probe(args) => probe::probe(&args),
        Command::Run(args) => run::run(&args),
        Command::Resume(args) => run::resume(&args),
        Command::Rehearse(args) => rehearse::rehearse(&args),
        Command::Status(args) => inspect::status(&args),
        Command::Runs(args) => inspect::runs(&args),
        Command::Log(args) => inspect::log(&args),
        Command::Items(args) => items::items(&args),
        Command::Worker(args) => worker::worker(&args),
        Command::Pause(args) => pause::control(crate::state::ItemControl::Pause, &args.into()),
        Command::Unpause(args) => pause::control(crate::state::ItemControl::Unpause, &args.into()),
        Command::Retry(args) => pause::control(crate::state::ItemControl::Retry, &args.into()),
        Command::Report(args) => report::report(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Check(args) => check::check(&args),
        Command::Next(args) => next::next(&args),
        Command::Cron(args) => cron::cron(&args),
        Command::Systemd(args) => systemd::systemd(&args),
        Command::Prune(args) => prune::prune(&args),
        Command::Schema => schema::schema(),
        Command::Actions(args) => actions::actions(&args),
        Command::Completions(args) => completions::completions(args.shell),
        Command::Man(args) => man::man(args.out.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (e.g. `ward plan x | head`) is not worth a message.
            if let WardError::Output(io) = &e
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return exit::FAILED;
            }
            let style = Style::stderr();
            eprintln!("{}: {e}", style.error("error"));
            e.exit_code()
        }
    }
}

/// The exit code of a run that ran to its end (docs/cli.md, "Exit codes").
fn ending_code(ending: Ending) -> i32 {
    match ending {
        Ending::Succeeded => exit::OK,
        Ending::Failed => exit::FAILED,
        Ending::ItemsFailed => exit::ITEMS_FAILED,
        Ending::StateLost => exit::STATE,
        Ending::Skipped => exit::SKIPPED,
        Ending::NotConfirmed => exit::NOT_CONFIRMED,
        Ending::Interrupted(signal) | Ending::Abandoned(signal) => signal_code(signal),
    }
}

/// 128 plus the number of the signal that stopped the run.
fn signal_code(signal: StopSignal) -> i32 {
    match signal {
        StopSignal::Hangup => exit::HANGUP,
        StopSignal::Interrupt => exit::INTERRUPT,
        StopSignal::Quit => exit::QUIT,
        StopSignal::Terminate => exit::TERMINATE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_codes_are_128_plus_the_signal_number() {
        for (signal, number) in [
            (StopSignal::Hangup, rustix::process::Signal::HUP),
            (StopSignal::Interrupt, rustix::process::Signal::INT),
            (StopSignal::Quit, rustix::process::Signal::QUIT),
            (StopSignal::Terminate, rustix::process::Signal::TERM),
        ] {
            assert_eq!(signal_code(signal), 128 + number.as_raw(), "{signal:?}");
        }
    }
}
