//! `--var name=value`: the one place its text is read. The operator's
//! arguments (`ward validate`, `plan`, `run`, `resume`) and the overrides a
//! run recorded (`ward resume`) become the same `(name, value text)` pairs
//! that [`crate::check_file`] takes; how a value is typed for templates is
//! [`template::override_value`]'s, and that alone.

use crate::error::WardError;
use crate::state::RunRecord;
use crate::template::{self, MASK, is_secret_name};

/// A `--var` argument that is not `name=value` with a valid name and
/// value; the message never shows a secret value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VarError(String);

/// Parses `--var name=value` arguments.
pub fn parse(args: &[String]) -> Result<Vec<(String, String)>, VarError> {
    args.iter()
        .map(|arg| {
            // A malformed `--var` never shows its value: `db_password hunter2`
            // or `db-password=hunter2` is a secret whose name is misspelt,
            // and the name check cannot know that.
            let (name, value) = arg.split_once('=').ok_or_else(|| {
                VarError(format!(
                    "--var {}: expected name=value, e.g. --var dest=/backup",
                    shown_malformed(arg, false)
                ))
            })?;
            if !crate::model::is_identifier(name) {
                return Err(VarError(format!(
                    "--var `{}`: not a variable name (letters, digits, `_`); the value is not shown",
                    shown_malformed(name, true),
                )));
            }
            template::override_value(value).map_err(|e| {
                // The value of a secret must not show up in an error either.
                let shown = if is_secret_name(name) {
                    format!("{name}={MASK}")
                } else {
                    arg.clone()
                };
                VarError(format!("--var {shown}: {e}"))
            })?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// What a usage error may show of a malformed `--var`, or of the name
/// part of one: its first word, at most 20 characters, so that a value
/// typed after a space (`db_password hunter2`) or glued to a name
/// (`db_passwordhunter2`, no `=`) is never echoed.
fn shown_malformed(text: &str, has_value: bool) -> String {
    const SHOWN: usize = 20;
    let trimmed = text.trim_start();
    let word = trimmed.split_whitespace().next().unwrap_or("");
    if !has_value && word.len() == trimmed.len() && is_secret_name(word) {
        return "(not shown: it looks like a secret)".to_owned();
    }
    let mut shown: String = word.chars().take(SHOWN).collect();
    if shown.len() < trimmed.len() {
        shown.push_str("...");
    }
    shown
}

/// The `--var` overrides a run recorded.
#[derive(Clone, Debug, Default)]
struct RecordedOverrides {
    /// Names and values, as given.
    values: Vec<(String, String)>,
    /// Names whose values were masked (secrets): they must be given again.
    masked: Vec<String>,
}

/// The `--var` overrides a run was started with. Overrides that cannot be
/// read are an error: resuming without them would run another backup than
/// the one started (another target, another database).
fn recorded(run: &RunRecord) -> Result<RecordedOverrides, WardError> {
    let map = run
        .overrides
        .clone()
        .map_err(|e| WardError::RunRecordDamaged {
            run: run.id.clone(),
            what: "`--var` overrides",
            problem: e.0,
        })?;
    let mut values = Vec::new();
    let mut masked = Vec::new();
    for (k, v) in map {
        if is_secret_name(&k) {
            masked.push(k);
        } else {
            // ward records every value as text; anything else is kept
            // as its JSON text rather than dropped.
            values.push((
                k,
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    Ok(RecordedOverrides { values, masked })
}

/// The overrides to resume `run` with: the recorded ones, with the
/// `--var`s given again (`args`) replacing them; every masked (secret) one
/// must be among those given again, since its value was not recorded. A
/// damaged record is reported before a bad argument.
pub fn for_resume(run: &RunRecord, args: &[String]) -> Result<Vec<(String, String)>, WardError> {
    let RecordedOverrides {
        values: mut overrides,
        masked,
    } = recorded(run)?;
    let given = parse(args)?;
    let missing: Vec<&String> = masked
        .iter()
        .filter(|m| !given.iter().any(|(k, _)| k == *m))
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("--var {m}=...")).collect();
        return Err(WardError::Usage(format!(
            "run {} was started with secret variables that are not recorded; give them again: {}",
            run.id,
            names.join(" ")
        )));
    }
    for (k, val) in given {
        overrides.retain(|(name, _)| *name != k);
        overrides.push((k, val));
    }
    Ok(overrides)
}
