//! The values templates can see: playbook vars (with `--var` overrides) and
//! the `ward.*` facts of the run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::Path;

use chrono::NaiveDateTime;
use minijinja::Value;
use serde::Serialize;

use super::secret::is_secret_name;
use super::{Redactor, Secrets, Templates};
use crate::diagnostic::{Diagnostic, Diagnostics};
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
        let dir = crate::source::playbook_dir(playbook);
        RunFacts {
            date: now.format("%Y-%m-%d").to_string(),
            time: now.format("%H:%M:%S").to_string(),
            timestamp: now.format("%Y-%m-%dT%H:%M:%S").to_string(),
            weekday: now.format("%a").to_string(),
            host: crate::host::hostname(),
            run_id: run_id.to_owned(),
            playbook_dir: dir.display().to_string(),
        }
    }
}

/// The value of `--var name=VALUE`. Only these whole values are typed:
/// `true`/`false` (booleans), a decimal whole number without a leading zero
/// or `+` (`0`, `42`, `-7`; a number), and a list or mapping in YAML flow
/// style (`[a, b]`, `{k: v}`; read as YAML). Anything else is the text as
/// given: `010`, `1.10`, `1e3`, `-0`, `~`, `null`, `yes` stay strings.
pub fn override_value(raw: &str) -> Result<serde_json::Value, OverrideError> {
    // `true`/`false` and plain whole numbers keep their type, so that
    // `--var full=false` makes `if: "{{ full }}"` false (the text "false"
    // would be true). Nothing else is read as YAML: an operator who types
    // `--var suffix=010` means the text.
    match raw {
        "true" => return Ok(serde_json::Value::Bool(true)),
        "false" => return Ok(serde_json::Value::Bool(false)),
        _ => {}
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && (raw == "0" || !digits.starts_with('0'))
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
        return Err(OverrideError::Yaml(d.message.clone()));
    }
    let node = node.ok_or(OverrideError::Empty)?;
    Ok(crate::yaml::from_node(&node)?)
}

/// Why a `--var` value that looks like a YAML list or mapping is not one.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The YAML does not parse: the parser's message.
    #[error("not a valid YAML list or mapping: {0}")]
    Yaml(String),
    /// No document at all.
    #[error("empty value")]
    Empty,
    /// It parses but cannot be a value.
    #[error(transparent)]
    Value(#[from] crate::yaml::DeError),
}

/// Everything templates can see, resolved once per run. Cloned for each
/// item of a `for_each` step, with `item` added.
#[derive(Clone)]
pub struct TemplateContext {
    /// Resolved variables, secrets in the clear (for rendering only).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The same plus `ward`, ready for minijinja.
    pub value: Value,
    /// The secret variables: by name, or made from one.
    pub secrets: Secrets,
    /// The text of every secret value, to mask in free text.
    pub redactor: Redactor,
    /// Vars that have no value: their template failed, they are in a
    /// cycle, or they are made from such a var. Reported once, at the cause.
    pub unrendered: HashSet<String>,
}

/// One declared variable on its way to a value.
struct Pending<'p> {
    var: &'p crate::model::Var,
    /// Indices of the declared, not overridden variables it reads.
    deps: Vec<usize>,
    /// Every name its templates read.
    names: HashSet<String>,
}

impl TemplateContext {
    /// Resolves vars in the order of their dependencies (a var may use any
    /// other, above or below it; a cycle is an error). An override replaces
    /// a var's value as given (it is not a template). Linear in the number
    /// of vars and references: each template sees only the names it reads.
    pub fn build(
        playbook: &Playbook,
        overrides: &[(String, String)],
        facts: &RunFacts,
        templates: &Templates,
        diags: &mut Diagnostics,
    ) -> TemplateContext {
        let overridden: HashMap<&str, &str> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let declared: HashMap<&str, usize> = playbook
            .vars
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.value.as_str(), i))
            .collect();
        let mut resolved = Resolved::new(facts);
        for (name, _) in overrides {
            if !declared.contains_key(name.as_str()) {
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
            }
        }
        // Overrides first (declared or not): they are values, not templates.
        for (name, value) in &overridden {
            // The CLI refuses these before a run; a value that still does
            // not read (a recorded override, an embedder) is an error, not
            // text: a list typed wrong must not become a string.
            let v = match override_value(value) {
                Ok(v) => v,
                Err(e) => {
                    diags.push(Diagnostic::error(
                        "bad-var",
                        NO_SPAN,
                        if is_secret_name(name) {
                            format!("--var {name}: not a valid list or mapping")
                        } else {
                            format!("--var {name}: {e}")
                        },
                    ));
                    continue;
                }
            };
            resolved.insert(name, v, is_secret_name(name).then(|| (*name).to_owned()));
        }
        let pending: Vec<Option<Pending>> = playbook
            .vars
            .iter()
            .map(|var| {
                if overridden.contains_key(var.name.value.as_str()) {
                    return None;
                }
                let mut names = HashSet::new();
                templates.node_names(&var.value, &mut names);
                let mut deps: Vec<usize> = names
                    .iter()
                    .filter(|n| !overridden.contains_key(n.as_str()))
                    .filter_map(|n| declared.get(n.as_str()).copied())
                    .collect();
                deps.sort_unstable();
                Some(Pending { var, deps, names })
            })
            .collect();
        let (order, stuck) = dependency_order(&pending);
        report_cycles(&pending, &stuck, &playbook.vars, diags);
        // A var that could not be made (an error, a cycle) has no value, and
        // neither has any var made from it: they are not rendered at all
        // (one diagnostic for the cause, none for what follows from it),
        // and steps that read them are skipped (see `unrendered`). Giving
        // them a stand-in value instead let a failed doubling chain start
        // over from the stand-in and do the same work again and again.
        let mut failed = vec![false; pending.len()];
        for &i in &stuck {
            failed[i] = true;
        }
        for i in order {
            let Some(p) = &pending[i] else { continue };
            if p.deps.iter().any(|&d| failed[d]) {
                failed[i] = true;
                continue;
            }
            let name = &p.var.name.value;
            let secret = if is_secret_name(name) {
                Some(name.clone())
            } else {
                resolved.secrets.used_by(&p.names).map(|u| u.root)
            };
            let ctx = resolved.context_for(&p.names);
            let what = || format!("variable `{name}`");
            let rendered = match templates.render_node(
                &p.var.value,
                &ctx,
                &resolved.secrets,
                &playbook.source,
                &what,
            ) {
                Ok((n, _)) => n,
                Err(errors) => {
                    diags.extend(errors);
                    failed[i] = true;
                    continue;
                }
            };
            match from_node::<serde_json::Value>(&rendered) {
                Ok(v) => resolved.insert(name, v, secret),
                Err(e) => {
                    diags.push(
                        e.into_diagnostic(p.var.value.span, &format!("in variable `{name}`")),
                    );
                    failed[i] = true;
                }
            }
        }
        let unrendered = playbook
            .vars
            .iter()
            .zip(&failed)
            .filter(|(_, f)| **f)
            .map(|(v, _)| v.name.value.clone())
            .collect();
        let value = resolved.full_context();
        TemplateContext {
            vars: resolved.json,
            value,
            secrets: resolved.secrets,
            redactor: resolved.redactor,
            unrendered,
        }
    }

    /// True if a template reading `names` cannot be rendered because one of
    /// them is a var that was not made (its error is already reported).
    pub fn reads_unrendered(&self, names: &HashSet<String>) -> bool {
        !self.unrendered.is_empty() && names.iter().any(|n| self.unrendered.contains(n))
    }

    /// The variables with every secret one shown as [`MASK`](super::MASK).
    pub fn masked_vars(&self) -> BTreeMap<String, serde_json::Value> {
        self.vars
            .iter()
            .map(|(k, v)| {
                let v = if self.secrets.contains(k) {
                    serde_json::Value::String(super::MASK.to_owned())
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// Variables resolved so far, as JSON (to record) and as template values.
struct Resolved {
    json: BTreeMap<String, serde_json::Value>,
    values: HashMap<String, Value>,
    ward: Value,
    secrets: Secrets,
    redactor: Redactor,
}

impl Resolved {
    fn new(facts: &RunFacts) -> Resolved {
        Resolved {
            json: BTreeMap::new(),
            values: HashMap::new(),
            ward: Value::from(minijinja::value::Serde(facts)),
            secrets: Secrets::default(),
            redactor: Redactor::default(),
        }
    }

    fn insert(&mut self, name: &str, v: serde_json::Value, secret_root: Option<String>) {
        if let Some(root) = secret_root {
            self.secrets.insert(name, &root);
            self.redactor.add_value(&v);
        }
        self.values
            .insert(name.to_owned(), Value::from(minijinja::value::Serde(&v)));
        self.json.insert(name.to_owned(), v);
    }

    /// A context with just the names a template reads.
    fn context_for(&self, names: &HashSet<String>) -> Value {
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        for n in names {
            if n == "ward" {
                map.insert("ward", self.ward.clone());
            } else if let Some(v) = self.values.get(n) {
                map.insert(n, v.clone());
            }
        }
        Value::from(map)
    }

    fn full_context(&self) -> Value {
        let mut map: BTreeMap<&str, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        map.insert("ward", self.ward.clone());
        Value::from(map)
    }
}

/// The pending vars in an order where each comes after those it reads
/// (Kahn's algorithm; among ready vars the one written first goes first),
/// and the vars that never became ready (in or behind a cycle).
fn dependency_order(pending: &[Option<Pending>]) -> (Vec<usize>, Vec<usize>) {
    let n = pending.len();
    let mut waiting_on = vec![0usize; n];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in pending.iter().enumerate() {
        if let Some(p) = p {
            waiting_on[i] = p.deps.len();
            for &d in &p.deps {
                readers[d].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| pending[i].is_some() && waiting_on[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &r in &readers[i] {
            waiting_on[r] -= 1;
            if waiting_on[r] == 0 {
                ready.push(Reverse(r));
            }
        }
    }
    let stuck = (0..n)
        .filter(|&i| pending[i].is_some() && waiting_on[i] > 0)
        .collect();
    (order, stuck)
}

/// One diagnostic per cycle among the stuck vars, with the full path.
/// Vars that only read a var in a cycle get none (follow-on noise).
fn report_cycles(
    pending: &[Option<Pending>],
    stuck: &[usize],
    vars: &[crate::model::Var],
    diags: &mut Diagnostics,
) {
    let is_stuck: HashSet<usize> = stuck.iter().copied().collect();
    // 0: not visited, 1: on the current walk, 2: done.
    let mut mark: HashMap<usize, u8> = HashMap::new();
    for &start in stuck {
        if mark.contains_key(&start) {
            continue;
        }
        // Every stuck var reads a stuck var, so this walk ends on a var
        // already seen: on this walk it closes a cycle.
        let mut path = vec![start];
        mark.insert(start, 1);
        let mut at = start;
        while let Some(next) = pending[at]
            .as_ref()
            .and_then(|p| p.deps.iter().copied().find(|d| is_stuck.contains(d)))
        {
            match mark.get(&next) {
                Some(1) => {
                    let from = path.iter().position(|&x| x == next).unwrap_or(0);
                    let cycle = &path[from..];
                    let names: Vec<String> = cycle
                        .iter()
                        .chain(std::iter::once(&next))
                        .map(|&i| format!("`{}`", vars[i].name.value))
                        .collect();
                    let first = &vars[cycle[0]];
                    let mut d = Diagnostic::error(
                        "var-cycle",
                        first.name.span,
                        format!("variables use each other in a cycle: {}", names.join(" → ")),
                    )
                    .with_help("a variable cannot be made from itself, directly or through others");
                    for &i in &cycle[1..] {
                        d = d.with_note(vars[i].name.span, "part of the cycle");
                    }
                    diags.push(d);
                    break;
                }
                Some(_) => break,
                None => {
                    mark.insert(next, 1);
                    path.push(next);
                    at = next;
                }
            }
        }
        for i in path {
            mark.insert(i, 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OverrideError, RunFacts, TemplateContext, override_value};
    use crate::diagnostic::Diagnostics;
    use crate::template::Templates;

    /// A `--var` that reaches the context without the CLI's check (a
    /// recorded override, an embedder) is an error, never quietly text;
    /// a secret one does not show the parser's words.
    #[test]
    fn an_override_that_does_not_read_is_an_error_not_text() {
        let source = crate::source::SourceFile::new(
            "p.yml",
            "ward: 1\nname: p\nvars:\n  agents: [a]\n  token: x\nsteps:\n  - id: s\n    run: \"true\"\n"
                .to_owned(),
        );
        let mut diags = Diagnostics::default();
        let playbook = crate::parse::parse(source, &mut diags).expect("parses");
        let facts = RunFacts::new(
            chrono::NaiveDate::from_ymd_opt(2026, 12, 2)
                .and_then(|d| d.and_hms_opt(2, 0, 0))
                .expect("date"),
            "run",
            std::path::Path::new("p.yml"),
        );
        let overrides = [
            ("agents".to_owned(), "[a, b".to_owned()),
            ("token".to_owned(), "{s3cr3t".to_owned()),
        ];
        TemplateContext::build(&playbook, &overrides, &facts, &Templates::new(), &mut diags);
        let errors: Vec<String> = diags
            .into_sorted()
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.message)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|m| m.starts_with("--var agents: not a valid YAML list or mapping")),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"--var token: not a valid list or mapping".to_owned()),
            "{errors:?}"
        );
        assert!(!errors.iter().any(|m| m.contains("s3cr3t")), "{errors:?}");
    }

    #[test]
    fn a_var_that_looks_like_yaml_but_is_not_says_why() {
        assert_eq!(
            override_value("[a, {k: v}]").expect("a list"),
            serde_json::json!(["a", {"k": "v"}])
        );
        let broken = override_value("[a, b").expect_err("unclosed");
        assert!(matches!(broken, OverrideError::Yaml(_)), "{broken:?}");
        assert!(
            broken
                .to_string()
                .starts_with("not a valid YAML list or mapping: "),
            "{broken}"
        );
        assert_eq!(
            override_value("{[a]: b}")
                .expect_err("a list as a key")
                .to_string(),
            "not a valid YAML list or mapping: mapping keys must be plain text, not lists or mappings"
        );
    }
}
