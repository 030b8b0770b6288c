//! The values templates can see: playbook vars (with `--var` overrides) and
//! the `ward.*` facts of the run.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDateTime;
use minijinja::Value;
use serde::Serialize;

use super::Templates;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::WardError;
use crate::model::NO_SPAN;
use crate::model::Playbook;
use crate::yaml::from_node;

/// Facts about the run that templates see as `ward.*`.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RunFacts {
    /// `ward.date`: `YYYY-MM-DD`.
    pub date: String,
    /// `ward.time`: `HH:MM:SS`.
    pub time: String,
    /// `ward.timestamp`: `YYYY-MM-DDTHH:MM:SS`.
    pub timestamp: String,
    /// `ward.weekday`: `Mon` .. `Sun`.
    pub weekday: String,
    /// `ward.host`: this machine's host name.
    pub host: String,
    /// `ward.run_id`: the run's id (`plan` when only planning).
    pub run_id: String,
    /// `ward.playbook_dir`: the folder of the playbook file.
    pub playbook_dir: String,
}

impl RunFacts {
    /// Facts for a run (or plan) starting at `now`.
    pub fn new(now: NaiveDateTime, run_id: &str, playbook: &Path) -> RunFacts {
        let dir = playbook
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        RunFacts {
            date: now.format("%Y-%m-%d").to_string(),
            time: now.format("%H:%M:%S").to_string(),
            timestamp: now.format("%Y-%m-%dT%H:%M:%S").to_string(),
            weekday: now.format("%a").to_string(),
            host: hostname(),
            run_id: run_id.to_owned(),
            playbook_dir: dir.display().to_string(),
        }
    }
}

impl RunFacts {
    /// This machine's host name.
    pub fn hostname() -> String {
        hostname()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Parses `--var name=value` arguments.
pub fn var_overrides(args: &[String]) -> Result<Vec<(String, String)>, WardError> {
    args.iter()
        .map(|arg| {
            let (name, value) = arg.split_once('=').ok_or_else(|| {
                WardError::Usage(format!(
                    "--var {arg}: expected name=value, e.g. --var dest=/backup"
                ))
            })?;
            if !crate::parse::is_identifier(name) {
                return Err(WardError::Usage(format!(
                    "--var {arg}: `{name}` is not a variable name (letters, digits, `_`)"
                )));
            }
            override_value(value).map_err(|e| WardError::Usage(format!("--var {arg}: {e}")))?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The value of `--var name=VALUE`: a boolean for `true`/`false`, a number
/// for a plain whole number, a list or mapping when VALUE is written in YAML
/// flow style (`[a, b]`, `{k: v}`), else the text as given.
pub fn override_value(raw: &str) -> Result<serde_json::Value, String> {
    // `true`/`false` and plain whole numbers keep their type, so that
    // `--var full=false` makes `if: "{{ full }}"` false (the text "false"
    // would be true). Anything else, `010` and `1.10` included, stays text.
    match raw {
        "true" => return Ok(serde_json::Value::Bool(true)),
        "false" => return Ok(serde_json::Value::Bool(false)),
        _ => {}
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && let Ok(n) = raw.parse::<i64>()
    {
        return Ok(serde_json::Value::from(n));
    }
    let t = raw.trim_start();
    if !(t.starts_with('[') || t.starts_with('{')) {
        return Ok(serde_json::Value::String(raw.to_owned()));
    }
    let (node, diags) = crate::yaml::load(raw, crate::yaml::Limits::default());
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(format!("not a valid YAML list or mapping: {}", d.message));
    }
    let node = node.ok_or("empty value")?;
    crate::yaml::from_node(&node).map_err(|e| e.message)
}

/// Everything templates can see, resolved once per run.
pub struct TemplateContext {
    /// Resolved variables (for plans and the run record).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The same plus `ward`, ready for minijinja.
    pub value: Value,
}

impl TemplateContext {
    /// Resolves vars in the order written; each may use earlier ones. An
    /// override replaces a var's value as given (it is not a template).
    pub fn build(
        playbook: &Playbook,
        overrides: &[(String, String)],
        facts: &RunFacts,
        templates: &Templates,
        diags: &mut Diagnostics,
    ) -> TemplateContext {
        let overridden: BTreeMap<&str, &str> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut vars: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (name, value) in overrides {
            if !playbook.vars.iter().any(|v| v.name.value == *name) {
                diags.push(
                    Diagnostic::warning(
                        "undeclared-var",
                        NO_SPAN,
                        format!("--var {name} is not declared under `vars:` in the playbook"),
                    )
                    .with_help(
                        "check the spelling; undeclared variables are still available to templates",
                    ),
                );
                vars.insert(
                    name.clone(),
                    override_value(value)
                        .unwrap_or_else(|_| serde_json::Value::String(value.clone())),
                );
            }
        }
        for var in &playbook.vars {
            let name = &var.name.value;
            if let Some(v) = overridden.get(name.as_str()) {
                let value = override_value(v)
                    .unwrap_or_else(|_| serde_json::Value::String((*v).to_owned()));
                vars.insert(name.clone(), value);
                continue;
            }
            let ctx = context_value(&vars, facts);
            let what = || format!("variable `{name}`");
            let rendered = match templates.render_node(&var.value, &ctx, &playbook.source, &what) {
                Ok(n) => n,
                Err(errors) => {
                    diags.extend(errors);
                    // Keep the raw text so later templates using this var do
                    // not report it as undefined too.
                    let raw = var.value.as_str().unwrap_or_default().to_owned();
                    vars.insert(name.clone(), serde_json::Value::String(raw));
                    continue;
                }
            };
            match from_node::<serde_json::Value>(&rendered) {
                Ok(v) => {
                    vars.insert(name.clone(), v);
                }
                Err(e) => {
                    diags.push(e.into_diagnostic(var.value.span, &format!("in variable `{name}`")))
                }
            }
        }
        let value = context_value(&vars, facts);
        TemplateContext { vars, value }
    }
}

fn context_value(vars: &BTreeMap<String, serde_json::Value>, facts: &RunFacts) -> Value {
    let mut map: BTreeMap<String, Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(minijinja::value::Serde(v))))
        .collect();
    map.insert(
        "ward".to_owned(),
        Value::from(minijinja::value::Serde(facts)),
    );
    Value::from(map)
}
