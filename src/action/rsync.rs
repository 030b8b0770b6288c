//! `rsync`: copy a tree with real rsync, keeping hard links.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::non_empty;
use super::pg_dumpall::forbidden_args;
use super::{Action, ParamProblem};

/// Runs rsync with an argv (no shell): `-a -H --delete` by default, never
/// `--inplace`, exit 24 (files vanished) a warning unless told otherwise.
pub struct Rsync;

/// What to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RsyncMode {
    /// The whole tree.
    #[default]
    Full,
    /// FOSSology's `gold` and `license` trees only (the "gold-only" backup).
    GoldOnly,
    /// The rules given in `filters`.
    Filter,
}

/// What rsync's exit code 24 (source files vanished during transfer) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vanished {
    /// Succeed with a warning (default).
    #[default]
    Warn,
    /// Fail the step.
    Fail,
}

/// Parameters of `rsync`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RsyncParams {
    /// Source folder (its contents are copied), or `host:path`.
    pub src: String,
    /// Destination folder (e.g. the backup's `current` tree), or `host:path`.
    pub dest: String,
    /// `full` (default), `gold-only` or `filter`.
    #[serde(default)]
    pub mode: RsyncMode,
    /// rsync filter rules for `mode: filter`, e.g. `["+ /gold/***", "- *"]`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Delete files in `dest` that are gone from `src` (default true).
    #[serde(default = "yes")]
    pub delete: bool,
    /// Keep hard links inside the source (`-H`, default true).
    #[serde(default = "yes")]
    pub hard_links: bool,
    /// `warn` (default) or `fail` when files vanished during the transfer (exit 24).
    #[serde(default)]
    pub vanished: Vanished,
    /// Extra rsync arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The rsync program (default: `rsync` on PATH).
    pub program: Option<String>,
}

fn yes() -> bool {
    true
}

const FORBIDDEN_ARGS: &[(&str, &str)] = &[
    (
        "--inplace",
        "it would change files that hard-linked snapshots share",
    ),
    (
        "--append",
        "it would change files that hard-linked snapshots share",
    ),
    (
        "--append-verify",
        "it would change files that hard-linked snapshots share",
    ),
    ("--write-devices", "it would write into device files"),
];

impl RsyncParams {
    /// The filter rules this mode implies.
    pub fn filter_rules(&self) -> Vec<String> {
        match self.mode {
            RsyncMode::Full => Vec::new(),
            RsyncMode::GoldOnly => ["+ /gold/***", "+ /license/***", "- *"]
                .into_iter()
                .map(String::from)
                .collect(),
            RsyncMode::Filter => self.filters.clone(),
        }
    }
}

impl Action for Rsync {
    const NAME: &'static str = "rsync";
    const SUMMARY: &'static str = "copy a tree with rsync (hard links kept, never in place)";
    type Params = RsyncParams;

    fn check(p: &RsyncParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("src", &p.src)
            .into_iter()
            .chain(non_empty("dest", &p.dest))
            .collect();
        match (p.mode, p.filters.is_empty()) {
            (RsyncMode::Filter, true) => out.push(
                ParamProblem::new("filters", "`mode: filter` needs `filters`")
                    .help("e.g. `filters: [\"+ /gold/***\", \"- *\"]`"),
            ),
            (RsyncMode::Full | RsyncMode::GoldOnly, false) => out.push(
                ParamProblem::new("filters", "`filters` only apply with `mode: filter`")
                    .help("set `mode: filter` or remove `filters`"),
            ),
            _ => {}
        }
        out.extend(forbidden_args("args", &p.args, FORBIDDEN_ARGS));
        out
    }

    fn describe(p: &RsyncParams) -> String {
        let mut flags = String::from("-a");
        if p.hard_links {
            flags.push('H');
        }
        if p.delete {
            flags.push_str(" --delete");
        }
        let mode = match p.mode {
            RsyncMode::Full => String::new(),
            RsyncMode::GoldOnly => " (gold-only: gold/ and license/)".into(),
            RsyncMode::Filter => format!(" (filters: {})", p.filters.join("; ")),
        };
        format!(
            "rsync {flags} {}/ -> {}{mode}",
            p.src.trim_end_matches('/'),
            p.dest
        )
    }
}
