//! The text `--help` adds after the options: examples, exit codes and the
//! environment.
//!
//! The exit codes come from [`exit`] (the one table; docs/cli.md shows the
//! same, a unit test in src/error.rs keeps those two together and one here
//! keeps this list with them). The environment list is checked against
//! docs/cli.md's "Environment" table by a test below.

use std::fmt::Write as _;

use crate::error::exit;

/// The version `--version` prints: the package version and, when built
/// from a git checkout, the commit (see build.rs).
pub const LONG_VERSION: &str = env!("WARD_LONG_VERSION");

/// One short line per exit code, keyed by the constants themselves. Each line
/// contains the words [`exit::ALL`] demands of docs/cli.md's row.
const EXIT_CODES: &[(i32, &str)] = &[
    (exit::OK, "everything went well"),
    (
        exit::FAILED,
        "a run failed (or a verification; also a failed output)",
    ),
    (
        exit::USAGE,
        "the playbook is invalid or the command line is wrong; nothing ran",
    ),
    (exit::LOCKED, "another run holds the lock"),
    (exit::STATE, "the state could not be recorded or read"),
    (exit::NO_STATE, "no state database at that path"),
    (
        exit::SKIPPED,
        "a precondition failed: the run was recorded skipped",
    ),
    (
        exit::STALE,
        "ward check: a backup is older than its `max_age`",
    ),
    (
        exit::NOT_CONFIRMED,
        "a `confirm:` step was not confirmed (wrong word, or no terminal and no --yes)",
    ),
    (
        exit::GUARD,
        "a restore guard refused the snapshot (see --override); nothing ran",
    ),
    (
        exit::ITEMS_FAILED,
        "items of a `for_each` step failed (see ward items RUN_ID --status failed)",
    ),
    (exit::HANGUP, "stopped by SIGHUP"),
    (exit::INTERRUPT, "stopped by SIGINT (Ctrl-C)"),
    (exit::QUIT, "abandoned on SIGQUIT"),
    (exit::TERMINATE, "stopped by SIGTERM"),
];

/// The environment variables ward reads, one short line each (docs/cli.md,
/// "Environment", has the full text).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "WARD_STATE",
        "the state database (a path or postgres://), unless --state is given",
    ),
    (
        "WARD_STATE_FOLDER",
        "the local folder (logs, key) of a PostgreSQL state",
    ),
    (
        "WARD_NOW",
        "pretend the local time is this (rehearsals, tests)",
    ),
    ("TZ", "the zone of a playbook without `timezone:`"),
    (
        "WARD_KILL_GRACE",
        "wait between SIGTERM and SIGKILL for steps (default 10s)",
    ),
    (
        "WARD_FAULT_KILL_AFTER_COMMITS",
        "test hook: die after the N-th state commit",
    ),
    ("WARD_BOOT_ID", "test hook: pretend this boot id"),
    (
        "WARD_TEST_PG_LEASE_MS",
        "test hook: a PostgreSQL run lock's lease in ms",
    ),
    (
        "WARD_TEST_FOR_EACH_LIMIT",
        "test hook: lower the 64 MiB limit of for_each lists",
    ),
    (
        "WARD_TEST_POWER_SUPPLY_DIR",
        "test hook: where `on_ac_power` looks",
    ),
    ("NO_COLOR", "no colours, even on a terminal"),
    (
        "XDG_STATE_HOME",
        "where the default state database lives (not for root)",
    ),
    ("TERM", "`dumb`: plain progress lines, no colours"),
    (
        "WARD_PROGRESS_INTERVAL_MS",
        "test hook: period of --progress lines without a terminal",
    ),
];

/// `ward --help`'s closing text.
pub fn top_level() -> String {
    let mut text = String::from(
        "Examples:\n  \
         ward validate backup.yml           check a playbook, every problem at once\n  \
         ward plan backup.yml               show what would run, run nothing\n  \
         ward run backup.yml                run it, one checkpoint per step\n  \
         ward resume --last                 continue the last run where it stopped\n  \
         ward status                        the last run's steps\n  \
         ward -v resume --last              ... and say why each step is (not) redone\n  \
         ward completions bash > ~/.local/share/bash-completion/completions/ward\n\n\
         Verbosity: -v prints ward's decisions to stderr (why a step is skipped or\n\
         not redone, which state database and lock), -vv adds detail. Never secrets.\n\n",
    );
    text.push_str("Exit codes:\n");
    for (code, meaning) in EXIT_CODES {
        let _ = writeln!(text, "  {code:>3}  {meaning}");
    }
    text.push_str("\nEnvironment:\n");
    for (name, effect) in ENVIRONMENT {
        let _ = writeln!(text, "  {name:<29} {effect}");
    }
    text.push_str("\nMore: docs/cli.md, or the manual: ward man | man -l -");
    text
}

/// `ward run --help`'s closing text.
pub const RUN: &str = "Examples:\n  \
    ward run backup.yml\n  \
    ward run backup.yml --var target=/mnt/usb --state /srv/ward/ward.db\n  \
    ward run backup.yml --if-due --quiet         (from cron: catch up a missed slot)\n  \
    WARD_NOW=2026-11-23 ward plan backup.yml     (rehearse another day first)\n\n\
    A step that fails ends the run with exit 1; `ward resume --last` continues it.";

/// `ward resume --help`'s closing text.
pub const RESUME: &str = "Examples:\n  \
    ward resume --last\n  \
    ward resume 20261202-021500-3f2a                 (a run id from `ward runs`)\n  \
    ward resume --last --var db_password=...         (secrets are not recorded)\n  \
    ward -v resume --last                            (why each step is, or is not, redone)\n\n\
    Steps recorded succeeded are not run again; a window closed after the\n\
    failure runs again as a whole (docs/cli.md, \"ward resume\").";

/// `ward plan --help`'s closing text.
pub const PLAN: &str = "Examples:\n  \
    ward plan backup.yml\n  \
    ward plan backup.yml --var full=true --format json\n  \
    ward plan backup.yml --format dot | dot -Tsvg > plan.svg\n\n\
    Nothing is run; secret values are shown as ********.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_exit_code_with_the_documented_words() {
        let codes: Vec<i32> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        let known: Vec<i32> = exit::ALL.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes, known,
            "help's exit codes differ from error::exit::ALL"
        );
        for ((code, line), (_, words)) in EXIT_CODES.iter().zip(exit::ALL) {
            // The signal rows name the signal; the others share the words
            // docs/cli.md must use (up to the max_age quoting).
            let words = words.trim_start_matches("older than its ");
            assert!(
                line.contains(words),
                "help says of exit {code}: `{line}`; expected `{words}`"
            );
        }
    }

    /// The variables in docs/cli.md's "Environment" table.
    fn documented_environment() -> Vec<String> {
        let text = include_str!("../../docs/cli.md");
        let table = text
            .split("\n## Environment\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/cli.md has an `## Environment` section");
        table
            .lines()
            .filter_map(|line| {
                let cell = line.trim().trim_matches('|').split('|').next()?.trim();
                Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_help_lists_the_documented_environment() {
        let mut documented = documented_environment();
        let mut listed: Vec<String> = ENVIRONMENT.iter().map(|(n, _)| (*n).to_owned()).collect();
        documented.sort();
        listed.sort();
        assert_eq!(
            listed, documented,
            "help's environment differs from docs/cli.md"
        );
    }

    #[test]
    fn the_long_version_starts_with_the_package_version() {
        assert!(
            LONG_VERSION.starts_with(env!("CARGO_PKG_VERSION")),
            "{LONG_VERSION}"
        );
    }
}
