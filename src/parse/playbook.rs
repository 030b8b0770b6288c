//! Decodes the top level of a playbook.

use std::sync::Arc;

use super::fields::{
    Ctx, DEFAULTS_KEYS, MAX_NAME, PLAYBOOK_KEYS, is_identifier, is_name, read_retry,
};
use super::step;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Defaults, Playbook, Spanned, Var};
use crate::source::{SourceFile, Span};
use crate::yaml::Node;

/// The format version this ward reads.
pub const FORMAT_VERSION: u32 = 1;

/// Default for `max_parallel:`.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// Names that templates provide themselves and variables may not take.
pub const RESERVED_VARS: &[&str] = &["ward", "steps", "env"];

pub(super) fn decode(
    source: Arc<SourceFile>,
    root: &Node,
    diags: &mut Diagnostics,
) -> Option<Playbook> {
    let ctx = Ctx {
        owner: "the playbook",
    };
    let Some(entries) = root.as_map() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                root.span,
                format!(
                    "a playbook must be a mapping, but this is {}",
                    root.kind_name()
                ),
            )
            .with_help("start with `ward: 1`, then `name:` and a list of `steps:`"),
        );
        return None;
    };

    let mut version = None;
    let mut name = None;
    let mut description = None;
    let mut vars = Vec::new();
    let mut defaults = Defaults::default();
    let mut max_parallel = DEFAULT_MAX_PARALLEL;
    let mut lock = None;
    let mut steps = None;
    let mut schedule = None;
    let mut jitter = None;
    let mut overlap = crate::model::Overlap::default();
    let mut timezone = None;
    let (mut notify, mut metrics) = Default::default();
    let mut preconditions = Vec::new();
    let mut max_age = None;
    let mut history = None;
    let mut rehearse = None;
    let mut restore = None;

    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str().unwrap_or("") {
            "ward" => version = ctx.value::<u32>("ward", value, diags),
            "name" => {
                name = ctx.value::<String>("name", value, diags);
                if let Some(n) = &name
                    && !is_name(n)
                {
                    diags.push(bad_name("playbook name", n));
                }
            }
            "description" => {
                description = ctx
                    .value::<String>("description", value, diags)
                    .map(|d| d.value)
            }
            "vars" => vars = decode_vars(&ctx, value, diags),
            "defaults" => defaults = decode_defaults(value, diags),
            "max_parallel" => {
                if let Some(n) = ctx.value::<usize>("max_parallel", value, diags) {
                    if n.value == 0 {
                        diags.push(
                            Diagnostic::error(
                                "invalid-value",
                                n.span,
                                "`max_parallel` must be at least 1",
                            )
                            .with_help("use 1 to run one step at a time"),
                        );
                    } else {
                        max_parallel = n.value;
                    }
                }
            }
            "lock" => {
                lock = ctx.value::<String>("lock", value, diags);
                if let Some(l) = &lock {
                    let ok = is_name(&l.value.replace('.', "-"));
                    if !ok {
                        diags.push(bad_name("lock name", l));
                    }
                }
            }
            "steps" => steps = Some(step::decode_all(value, diags)),
            "schedule" => schedule = ctx.value::<String>("schedule", value, diags),
            "jitter" => jitter = ctx.value("jitter", value, diags),
            "overlap" => {
                if let Some(o) = ctx.value::<crate::model::Overlap>("overlap", value, diags) {
                    overlap = o.value;
                }
            }
            "timezone" => timezone = ctx.value::<String>("timezone", value, diags),
            "notify" => notify = super::notify::decode(value, diags),
            "metrics" => metrics = super::notify::decode_metrics(value, diags),
            "preconditions" => preconditions = super::precondition::decode_all(value, diags),
            "max_age" => max_age = ctx.value("max_age", value, diags),
            "history" => history = read_history(&ctx, value, diags),
            "rehearse" => rehearse = super::rehearse::decode(value, diags),
            "restore" => restore = super::restore::decode(value, diags),
            _ => ctx.unknown_key(&entry.key, PLAYBOOK_KEYS, diags),
        }
    }

    let top = Span::point(1, 1);
    match &version {
        None if !has_key(entries, "ward") => diags.push(
            Diagnostic::error("missing-key", top, "missing required key `ward` (the format version)")
                .with_help("add `ward: 1` as the first line"),
        ),
        Some(v) if v.value != FORMAT_VERSION => diags.push(
            Diagnostic::error(
                "unsupported-version",
                v.span,
                format!("playbook format version {} is not supported; this ward reads version {FORMAT_VERSION}", v.value),
            )
            .with_help("write `ward: 1`, or upgrade ward if the playbook was written for a newer one"),
        ),
        _ => {}
    }
    if name.is_none() && !has_key(entries, "name") {
        diags.push(
            Diagnostic::error("missing-key", top, "missing required key `name`")
                .with_help("add e.g. `name: nightly-backup`"),
        );
    }
    if steps.is_none() && !has_key(entries, "steps") {
        diags.push(
            Diagnostic::error("missing-key", top, "missing required key `steps`").with_help(
                "add a list of steps, each with an `id` and one of `action`, `run` or `cmd`",
            ),
        );
    }

    let steps = steps.unwrap_or_default();
    if let Some(r) = &rehearse {
        super::rehearse::check_names(r, &vars, &steps, diags);
    }
    Some(Playbook {
        source,
        name: name.unwrap_or_else(|| Spanned::new(String::new(), top)),
        description,
        vars,
        defaults,
        max_parallel,
        lock,
        steps,
        schedule,
        jitter,
        overlap,
        timezone,
        notify,
        metrics,
        preconditions,
        max_age,
        history,
        rehearse,
        restore,
    })
}

/// Reads `history:` and checks its numbers (a negative or fractional one
/// is refused by the type already, at its own line and column).
fn read_history(
    ctx: &Ctx<'_>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Spanned<crate::model::History>> {
    let history = ctx.value::<crate::model::History>("history", node, diags)?;
    let problems = history.problems();
    for (key, p) in &problems {
        // At the number itself when it is written in the mapping.
        let span = node
            .as_map()
            .and_then(|m| m.iter().find(|e| e.key.as_str() == Some(key)))
            .map_or(node.span, |e| e.value.span);
        diags.push(
            Diagnostic::error(
                "invalid-value",
                span,
                format!("invalid `history` in {}: {p}", ctx.owner),
            )
            .with_help("e.g. `history: { keep_days: 90, keep_runs: 50 }`"),
        );
    }
    problems.is_empty().then_some(history)
}

fn has_key(entries: &[crate::yaml::Entry], key: &str) -> bool {
    entries.iter().any(|e| e.key.as_str() == Some(key))
}

fn bad_name(what: &str, name: &Spanned<String>) -> Diagnostic {
    Diagnostic::error(
        "invalid-name",
        name.span,
        format!("{what} `{}` is not allowed", name.value),
    )
    .with_help(format!(
        "use lower-case letters, digits, `-` and `_`, starting with a letter or digit, \
                 at most {MAX_NAME} of them"
    ))
}

fn decode_vars(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Vec<Var> {
    let Some(entries) = ctx.mapping("vars", node, diags) else {
        return Vec::new();
    };
    let mut vars = Vec::new();
    for entry in entries {
        let Some(name) = ctx.value::<String>("vars", &entry.key, diags) else {
            continue;
        };
        if !is_identifier(&name) {
            diags.push(
                Diagnostic::error(
                    "invalid-name",
                    name.span,
                    format!("variable name `{}` cannot be used in templates", name.value),
                )
                .with_help(
                    "use letters, digits and `_`, starting with a letter or `_` (e.g. `pg_host`)",
                ),
            );
            continue;
        }
        if RESERVED_VARS.contains(&name.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "reserved-name",
                    name.span,
                    format!("variable name `{}` is reserved by ward", name.value),
                )
                .with_help("choose another name; `ward.*` holds the date, host and run id"),
            );
            continue;
        }
        vars.push(Var {
            name,
            value: entry.value.clone(),
        });
    }
    vars
}

fn decode_defaults(node: &Node, diags: &mut Diagnostics) -> Defaults {
    let ctx = Ctx {
        owner: "`defaults`",
    };
    let mut defaults = Defaults::default();
    let Some(entries) = ctx.mapping("defaults", node, diags) else {
        return defaults;
    };
    for entry in entries {
        match entry.key.as_str().unwrap_or("") {
            "timeout" => defaults.timeout = ctx.value("timeout", &entry.value, diags),
            "retry" => defaults.retry = read_retry(&ctx, &entry.value, diags),
            _ => ctx.unknown_key(&entry.key, DEFAULTS_KEYS, diags),
        }
    }
    defaults
}
