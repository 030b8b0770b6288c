//! Decodes `rehearse:` and checks the names it gives against the
//! playbook's variables and steps (every one at its own line and column).

use super::fields::Ctx;
use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::rehearse::{
    REHEARSE_KEYS, Rehearse, RehearseCheck, RehearseCheckDoc, RehearseCheckKind, RehearsePostgres,
};
use crate::model::{Spanned, Step, Var};
use crate::yaml::Node;

const POSTGRES_KEYS: &[&str] = &["host", "port", "user"];

/// Reads `rehearse:`; `None` when it is not a mapping (reported).
pub(super) fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Rehearse> {
    let ctx = Ctx {
        owner: "`rehearse`",
    };
    let entries = ctx.mapping("rehearse", node, diags)?;
    let mut r = Rehearse {
        span: node.span,
        targets: Vec::new(),
        postgres: None,
        fence: Vec::new(),
        vars: Vec::new(),
        checks: Vec::new(),
        row_counts: true,
    };
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str().unwrap_or("") {
            "targets" => r.targets = ctx.step_refs("targets", value, diags),
            "fence" => r.fence = ctx.step_refs("fence", value, diags),
            "postgres" => r.postgres = decode_postgres(value, diags),
            "vars" => {
                for e in ctx.mapping("vars", value, diags).unwrap_or(&[]) {
                    if let (Some(name), Some(v)) = (
                        ctx.value::<String>("vars", &e.key, diags),
                        ctx.value::<String>("vars", &e.value, diags),
                    ) {
                        r.vars.push((name, v.value));
                    }
                }
            }
            "checks" => r.checks = decode_checks(&ctx, value, diags),
            "row_counts" => {
                if let Some(b) = ctx.value::<bool>("row_counts", value, diags) {
                    r.row_counts = b.value;
                }
            }
            _ => ctx.unknown_key(&entry.key, REHEARSE_KEYS, diags),
        }
    }
    Some(r)
}

fn decode_postgres(node: &Node, diags: &mut Diagnostics) -> Option<RehearsePostgres> {
    let ctx = Ctx {
        owner: "`rehearse.postgres`",
    };
    let entries = ctx.mapping("postgres", node, diags)?;
    let (mut host, mut port, mut user) = (None, None, None);
    for e in entries {
        let slot = match e.key.as_str().unwrap_or("") {
            "host" => &mut host,
            "port" => &mut port,
            "user" => &mut user,
            _ => {
                ctx.unknown_key(&e.key, POSTGRES_KEYS, diags);
                continue;
            }
        };
        *slot = ctx.value::<String>(e.key.as_str().unwrap_or(""), &e.value, diags);
    }
    if host.is_none() && !entries.iter().any(|e| e.key.as_str() == Some("host")) {
        diags.push(
            Diagnostic::error(
                "missing-key",
                node.span,
                "missing required key `host` in `rehearse.postgres`",
            )
            .with_help("name the variable that holds the PostgreSQL host, e.g. `host: pg_host`"),
        );
    }
    Some(RehearsePostgres {
        host: host?,
        port,
        user,
    })
}

fn decode_checks(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Vec<RehearseCheck> {
    let Some(items) = node.as_seq() else {
        if !node.is_null() {
            diags.push(Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `checks` in {}: expected a list, found {}",
                    ctx.owner,
                    node.kind_name()
                ),
            ));
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(doc) = ctx.value::<RehearseCheckDoc>("checks", item, diags) else {
            continue;
        };
        let span_of = |key: &str| {
            item.as_map()
                .and_then(|m| m.iter().find(|e| e.key.as_str() == Some(key)))
                .map_or(item.span, |e| e.value.span)
        };
        let doc = doc.value;
        let kind = match (doc.sql, doc.exists) {
            (Some(query), None) => {
                let Some(expect) = doc.expect else {
                    diags.push(
                        Diagnostic::error(
                            "missing-key",
                            item.span,
                            "a `sql` check needs `expect`, the value the query must return",
                        )
                        .with_help("e.g. `expect: \"3\"`"),
                    );
                    continue;
                };
                RehearseCheckKind::Sql {
                    db: doc.db.unwrap_or_else(|| "postgres".into()),
                    query,
                    expect,
                }
            }
            (None, Some(path)) => {
                let Some(target) = doc.target else {
                    diags.push(
                        Diagnostic::error(
                            "missing-key",
                            item.span,
                            "an `exists` check needs `target`, the target variable its path is in",
                        )
                        .with_help("e.g. `target: repo`"),
                    );
                    continue;
                };
                RehearseCheckKind::Exists {
                    target: Spanned::new(target, span_of("target")),
                    path,
                }
            }
            _ => {
                diags.push(
                    Diagnostic::error(
                        "invalid-value",
                        item.span,
                        "a rehearsal check has exactly one of `sql` and `exists`",
                    )
                    .with_help(
                        "write `sql: ...` with `expect: ...`, or `exists: <path>` with `target: <var>`",
                    ),
                );
                continue;
            }
        };
        out.push(RehearseCheck {
            name: doc.name,
            kind,
            span: item.span,
        });
    }
    out
}

/// Checks the names in `rehearse:`: variables must be in `vars:`, fenced
/// steps must exist, a variable plays one part only.
pub(super) fn check_names(r: &Rehearse, vars: &[Var], steps: &[Step], diags: &mut Diagnostics) {
    let var_names: Vec<&str> = vars.iter().map(|v| v.name.value.as_str()).collect();
    let unknown_var = |what: &str, name: &Spanned<String>, diags: &mut Diagnostics| {
        if !var_names.contains(&name.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "unknown-var",
                    name.span,
                    format!(
                        "`rehearse.{what}` names `{}`, which is not a variable in `vars:`",
                        name.value
                    ),
                )
                .with_help(
                    suggest(&name.value, var_names.iter().copied())
                        .unwrap_or_else(|| "name a variable of the playbook's `vars:`".into()),
                ),
            );
        }
    };
    let mut seen: Vec<(String, &str)> = Vec::new();
    let mut once = |what: &'static str, name: &Spanned<String>, diags: &mut Diagnostics| {
        if let Some((_, before)) = seen.iter().find(|(n, _)| *n == name.value) {
            diags.push(Diagnostic::error(
                "duplicate-name",
                name.span,
                format!(
                    "variable `{}` is named twice in `rehearse` (in `{before}` and `{what}`); it can play one part only",
                    name.value
                ),
            ));
        } else {
            seen.push((name.value.clone(), what));
        }
    };
    for t in &r.targets {
        unknown_var("targets", t, diags);
        once("targets", t, diags);
    }
    if let Some(pg) = &r.postgres {
        for (what, v) in [
            ("postgres.host", Some(&pg.host)),
            ("postgres.port", pg.port.as_ref()),
            ("postgres.user", pg.user.as_ref()),
        ] {
            if let Some(v) = v {
                unknown_var(what, v, diags);
                once(what, v, diags);
            }
        }
    }
    for (name, _) in &r.vars {
        unknown_var("vars", name, diags);
        once("vars", name, diags);
    }
    let ids: Vec<&str> = steps.iter().map(|s| s.id.value.as_str()).collect();
    for f in &r.fence {
        if !ids.contains(&f.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    "unknown-step",
                    f.span,
                    format!("`rehearse.fence` names unknown step `{}`", f.value),
                )
                .with_help(
                    suggest(&f.value, ids.iter().copied())
                        .unwrap_or_else(|| "steps are named by their `id`".into()),
                ),
            );
        }
    }
    for c in &r.checks {
        if let RehearseCheckKind::Exists { target, .. } = &c.kind
            && !r.targets.iter().any(|t| t.value == target.value)
        {
            diags.push(
                Diagnostic::error(
                    "unknown-var",
                    target.span,
                    format!(
                        "the check's `target` `{}` is not one of `rehearse.targets`",
                        target.value
                    ),
                )
                .with_help("add it to `targets`, or name one of them"),
            );
        }
    }
}
