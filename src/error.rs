//! Errors that end a ward command, and the one table of exit codes.
//!
//! Exit codes are part of ward's interface: [`exit`] names every code ward
//! uses and docs/cli.md shows the same table (a unit test keeps the two
//! together). Every error kind maps onto it explicitly in
//! [`WardError::exit_code`]; the end of a run maps onto it in the CLI.

/// Process exit codes: the only place they are chosen.
pub mod exit {
    /// Everything went well (warnings may have been printed); also resuming
    /// a run that already succeeded.
    pub const OK: i32 = 0;
    /// A run (or a verification) failed; also a failed output and any
    /// internal failure that fits no other code.
    pub const FAILED: i32 = 1;
    /// The playbook is invalid, the command line is wrong, the run is
    /// unknown, or the playbook changed since the run started; nothing was
    /// run.
    pub const USAGE: i32 = 2;
    /// Another run holds the lock (any other lock problem is [`STATE`]).
    pub const LOCKED: i32 = 3;
    /// The state could not be recorded or read: a full disk, a damaged
    /// database or damaged records of a run, or a state folder that others
    /// could change (refused). In a run, the `when: always` steps still
    /// ran; the printed outcome says how far it got.
    pub const STATE: i32 = 4;
    /// No state database at the given path. Read commands and `resume`
    /// never create one.
    pub const NO_STATE: i32 = 5;
    /// A precondition failed: the run was recorded `skipped` and no step
    /// ran (so cron can tell "skipped" from "failed").
    pub const SKIPPED: i32 = 6;
    /// `ward check`: a playbook's last successful run is older than its
    /// `max_age`, or it never succeeded.
    pub const STALE: i32 = 7;
    /// A `confirm:` step was not confirmed: a wrong word was typed (the
    /// step failed, nothing after it ran), or there was no terminal to ask
    /// at and no `--yes` (refused before anything ran).
    pub const NOT_CONFIRMED: i32 = 8;
    /// A restore guard refused the chosen snapshot (its manifest does not
    /// match this system) and was not overridden with `--override`; no
    /// step ran.
    pub const GUARD: i32 = 9;
    /// Items of a `for_each` step failed and nothing else did: the other
    /// items ran, `ward items RUN_ID --status failed` lists the failed ones
    /// and `ward resume` runs them again. Never 0 while an item failed.
    pub const ITEMS_FAILED: i32 = 10;
    /// The run was stopped by SIGHUP (128 + 1).
    pub const HANGUP: i32 = 129;
    /// The run was stopped by SIGINT, Ctrl-C (128 + 2).
    pub const INTERRUPT: i32 = 130;
    /// The run was abandoned on SIGQUIT, `Ctrl-\` (128 + 3).
    pub const QUIT: i32 = 131;
    /// The run was stopped by SIGTERM (128 + 15).
    pub const TERMINATE: i32 = 143;

    /// Every code above with words its row in docs/cli.md must contain.
    pub const ALL: &[(i32, &str)] = &[
        (OK, "everything went well"),
        (FAILED, "a run failed"),
        (USAGE, "the playbook is invalid"),
        (LOCKED, "another run holds the lock"),
        (STATE, "the state could not be recorded or read"),
        (NO_STATE, "no state database at that path"),
        (SKIPPED, "a precondition failed"),
        (STALE, "older than its `max_age`"),
        (NOT_CONFIRMED, "not confirmed"),
        (GUARD, "a restore guard refused"),
        (ITEMS_FAILED, "items of a `for_each` step failed"),
        (HANGUP, "SIGHUP"),
        (INTERRUPT, "SIGINT"),
        (QUIT, "SIGQUIT"),
        (TERMINATE, "SIGTERM"),
    ];
}

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum WardError {
    /// The playbook file could not be read at all.
    #[error(transparent)]
    ReadPlaybook(#[from] crate::parse::ReadError),
    /// A `--var` argument is wrong.
    #[error(transparent)]
    BadVar(#[from] crate::cli::vars::VarError),
    /// A command-line argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A run could not start or resume for its lock: `what` names the
    /// playbook or run ("playbook `x` not run"), `lease` says why (another
    /// run holds it, or the lock file cannot be used).
    #[error("{what}: {lease}")]
    NotStarted {
        /// The playbook or run that did not start, in words.
        what: String,
        /// Why.
        lease: Box<crate::state::LeaseError>,
    },
    /// The state database failed.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    /// No such run in the state database.
    #[error("{0}")]
    RunNotFound(String),
    /// The playbook changed since the run started.
    #[error("{0}")]
    PlaybookChanged(String),
    /// What the state database recorded about a run cannot be read back
    /// (its `--var` overrides or its `ward.*` facts): a state problem, never
    /// read as "nothing recorded".
    #[error(
        "run {run}: its recorded {what} cannot be read ({problem}); the state database is \
         damaged there, so the run cannot be resumed as it was started: start a new run with \
         `ward run`"
    )]
    RunRecordDamaged {
        /// The run id.
        run: String,
        /// What is damaged, e.g. "`--var` overrides".
        what: &'static str,
        /// Why it cannot be read.
        problem: String,
    },
    /// `crontab` failed, or the crontab's ward block cannot be read back.
    #[error("{0}")]
    Crontab(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A run needs a confirmation nobody can give (no terminal, no `--yes`).
    #[error("{0}")]
    NotConfirmed(String),
    /// A restore guard refused the snapshot.
    #[error("{0}")]
    Guard(String),
    /// A failure inside ward that no other kind describes.
    #[error("{0}")]
    Internal(String),
}

impl WardError {
    /// The process exit code for this error. No arm is a catch-all: a new
    /// kind of error must be given its code here.
    pub fn exit_code(&self) -> i32 {
        match self {
            WardError::ReadPlaybook(_)
            | WardError::BadVar(_)
            | WardError::Usage(_)
            | WardError::RunNotFound(_)
            | WardError::PlaybookChanged(_) => exit::USAGE,
            WardError::Output(_)
            | WardError::Runtime(_)
            | WardError::Internal(_)
            | WardError::Crontab(_) => exit::FAILED,
            // Only a lock held by another run is "locked"; a lock file that
            // cannot be used is a state-folder fault.
            WardError::NotStarted { lease, .. } => match lease.as_ref() {
                crate::state::LeaseError::Held { .. } => exit::LOCKED,
                crate::state::LeaseError::State(_) => exit::STATE,
            },
            WardError::State(e) => state_code(e),
            WardError::RunRecordDamaged { .. } => exit::STATE,
            WardError::NotConfirmed(_) => exit::NOT_CONFIRMED,
            WardError::Guard(_) => exit::GUARD,
        }
    }
}

/// The exit code of a state failure: a database that is not there is
/// [`exit::NO_STATE`], a `--state` naming a kind of store this ward does
/// not have is [`exit::USAGE`] (the command line is wrong); everything
/// else is [`exit::STATE`].
fn state_code(e: &crate::state::StateError) -> i32 {
    use crate::state::StateError;
    match e {
        StateError::Missing { .. } => exit::NO_STATE,
        StateError::Unsupported { .. } => exit::USAGE,
        StateError::Backend { .. }
        | StateError::LeaseLost { .. }
        | StateError::TooNew { .. }
        | StateError::Io { .. }
        | StateError::Untrusted { .. }
        | StateError::Damaged { .. }
        | StateError::Foreign { .. }
        | StateError::NeedsUpgrade { .. }
        | StateError::Key { .. }
        | StateError::Corrupt { .. } => exit::STATE,
    }
}

#[cfg(test)]
mod tests {
    use super::exit;

    /// The rows of the exit code table in docs/cli.md: (code, meaning).
    fn documented() -> Vec<(i32, String)> {
        let text = include_str!("../docs/cli.md");
        let table = text
            .split("\n## Exit codes\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/cli.md has an `## Exit codes` section");
        table
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
                let code = cells.first()?.trim().parse().ok()?;
                Some((code, cells.get(1)?.trim().to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_exit_code_table_and_docs_cli_md_agree() {
        let docs = documented();
        let documented_codes: Vec<i32> = docs.iter().map(|(c, _)| *c).collect();
        let known: Vec<i32> = exit::ALL.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            documented_codes, known,
            "docs/cli.md's exit codes differ from error::exit::ALL"
        );
        for ((code, words), (_, row)) in exit::ALL.iter().zip(&docs) {
            assert!(
                row.contains(words),
                "docs/cli.md says of exit {code}: `{row}`; expected it to mention `{words}`"
            );
        }
    }

    #[test]
    fn every_code_is_listed_once() {
        let mut codes: Vec<i32> = exit::ALL.iter().map(|(c, _)| *c).collect();
        codes.dedup();
        assert_eq!(codes.len(), exit::ALL.len());
        assert!(
            codes.windows(2).all(|w| w[0] < w[1]),
            "sorted as in the docs"
        );
    }
}
