//! `snapshot.hardlink`: a dated hard-link copy of the `current` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::non_empty;
use super::{Action, ParamProblem};

/// Links `src` into `<dir>/<name>.partial` in parallel, renames it to
/// `<dir>/<name>` when complete and switches the `latest` symlink atomically.
pub struct SnapshotHardlink;

/// Full snapshots every time, or a base every `cycle` days plus changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotStrategy {
    /// Every snapshot links the whole tree (FOSSology solution 1).
    #[default]
    Full,
    /// A full base every `cycle` days; otherwise only files changed since the base (solution 2).
    BaseIncremental,
}

/// Parameters of `snapshot.hardlink`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHardlinkParams {
    /// The tree to snapshot (e.g. the backup's `current`).
    pub src: String,
    /// The folder that holds the snapshots.
    pub dir: String,
    /// Snapshot name (default: the run's date, `YYYY-MM-DD`).
    pub name: Option<String>,
    /// Name of the symlink in `dir` that points at the newest snapshot (default `latest`).
    #[serde(default = "default_latest")]
    pub latest: String,
    /// `full` (default) or `base-incremental`.
    #[serde(default)]
    pub strategy: SnapshotStrategy,
    /// Days between full bases, for `base-incremental`.
    pub cycle: Option<u32>,
    /// Threads that link in parallel (default: number of CPUs).
    pub threads: Option<u32>,
}

/// Default name of the `latest` symlink.
pub fn default_latest() -> String {
    "latest".into()
}

/// Checks a name that must be one path component.
pub(super) fn component_problem(key: &'static str, name: &str) -> Option<ParamProblem> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some(ParamProblem::new(
            key,
            format!("`{key}` must be a plain name inside `dir`, not `{name}`"),
        ))
    } else {
        None
    }
}

impl Action for SnapshotHardlink {
    const NAME: &'static str = "snapshot.hardlink";
    const SUMMARY: &'static str = "hard-link a dated snapshot of a tree and switch `latest` to it";
    type Params = SnapshotHardlinkParams;

    fn check(p: &SnapshotHardlinkParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("src", &p.src)
            .into_iter()
            .chain(non_empty("dir", &p.dir))
            .chain(component_problem("latest", &p.latest))
            .collect();
        if let Some(name) = &p.name {
            out.extend(component_problem("name", name));
            if name.ends_with(".partial") {
                out.push(ParamProblem::new("name", "snapshot names may not end in `.partial` (ward uses it for unfinished snapshots)"));
            }
            if *name == p.latest {
                out.push(ParamProblem::new(
                    "name",
                    "the snapshot name is the same as the `latest` link",
                ));
            }
        }
        match (p.strategy, p.cycle) {
            (SnapshotStrategy::BaseIncremental, None) => out.push(
                ParamProblem::new(
                    "strategy",
                    "`strategy: base-incremental` needs `cycle` (days between full bases)",
                )
                .help("e.g. `cycle: 7`"),
            ),
            (SnapshotStrategy::BaseIncremental, Some(0)) => {
                out.push(ParamProblem::new("cycle", "`cycle` must be at least 1"));
            }
            (SnapshotStrategy::Full, Some(_)) => out.push(ParamProblem::new(
                "cycle",
                "`cycle` only applies to `strategy: base-incremental`",
            )),
            _ => {}
        }
        if p.threads == Some(0) {
            out.push(ParamProblem::new("threads", "`threads` must be at least 1"));
        }
        out
    }

    fn describe(p: &SnapshotHardlinkParams) -> String {
        let name = p.name.as_deref().unwrap_or("<date>");
        let dir = p.dir.trim_end_matches('/');
        let strategy = match (p.strategy, p.cycle) {
            (SnapshotStrategy::BaseIncremental, Some(c)) => format!(", base every {c} days"),
            _ => String::new(),
        };
        format!(
            "hard-link {} -> {dir}/{name} (via {name}.partial), then {dir}/{} -> {name}{strategy}",
            p.src, p.latest
        )
    }
}
