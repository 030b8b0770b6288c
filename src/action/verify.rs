//! `verify`: check a backup set against its manifest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::non_empty;
use super::{Action, ParamProblem};

/// Reads `manifest.json` of a backup set and reports every missing,
/// changed, truncated or extra file.
pub struct Verify;

/// Parameters of `verify`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The backup set (a snapshot folder or the `latest` link).
    pub path: String,
    /// The manifest (default `<path>/manifest.json`).
    pub manifest: Option<String>,
    /// Hash every file, not only those the manifest sampled (default false).
    #[serde(default)]
    pub full: bool,
}

impl Action for Verify {
    const NAME: &'static str = "verify";
    const SUMMARY: &'static str = "check a backup set against its manifest";
    type Params = VerifyParams;

    fn check(p: &VerifyParams) -> Vec<ParamProblem> {
        non_empty("path", &p.path).into_iter().collect()
    }

    fn describe(p: &VerifyParams) -> String {
        let manifest = p
            .manifest
            .clone()
            .unwrap_or_else(|| format!("{}/manifest.json", p.path.trim_end_matches('/')));
        let depth = if p.full {
            "every file"
        } else {
            "sizes, sampled hashes"
        };
        format!("verify {} against {manifest} ({depth})", p.path)
    }
}
