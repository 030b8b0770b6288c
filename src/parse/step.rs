//! Decodes the `steps:` list.

use super::fields::{Ctx, MAX_NAME, STEP_KEYS, is_identifier, is_name, read_retry};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{
    Confirm, ForEach, ItemEmail, ItemEnd, ItemSource, MaxFailed, OnItem, Spanned, Step, StepBody,
    When,
};
use crate::yaml::{Node, NodeKind};

/// Decodes every step; broken steps are reported and left out.
pub(super) fn decode_all(node: &Node, diags: &mut Diagnostics) -> Vec<Step> {
    let Some(items) = node.as_seq() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "`steps` must be a list of steps, found {}",
                    node.kind_name()
                ),
            )
            .with_help("write each step as a list item: `- id: my-step`"),
        );
        return Vec::new();
    };
    if items.is_empty() {
        diags.push(
            Diagnostic::error(
                "empty",
                node.span,
                "`steps` is empty; a playbook needs at least one step",
            )
            .with_help("add a step, e.g. `- id: hello` with `cmd: [echo, hello]`"),
        );
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| decode(i, item, diags))
        .collect()
}

fn decode(index: usize, node: &Node, diags: &mut Diagnostics) -> Option<Step> {
    let Some(entries) = node.as_map() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "step {} must be a mapping, found {}",
                    index + 1,
                    node.kind_name()
                ),
            )
            .with_help("a step looks like `- id: name` followed by `run:`, `cmd:` or `action:`"),
        );
        return None;
    };

    // Read the id first so every later message can name the step.
    let id_node = entries
        .iter()
        .find(|e| e.key.as_str() == Some("id"))
        .map(|e| &e.value);
    let anon = format!("step {}", index + 1);
    let id = id_node.and_then(|n| Ctx { owner: &anon }.value::<String>("id", n, diags));
    let owner = match &id {
        Some(id) => format!("step `{}`", id.value),
        None => anon.clone(),
    };
    let ctx = Ctx { owner: &owner };
    match &id {
        None if id_node.is_none() => diags.push(
            Diagnostic::error("missing-key", node.span, format!("{anon} has no `id`"))
                .with_help("add `id: some-name` (lower-case letters, digits, `-`, `_`)"),
        ),
        Some(id) if !is_name(id) => diags.push(
            Diagnostic::error(
                "invalid-name",
                id.span,
                format!("step id `{}` is not allowed", id.value),
            )
            .with_help(format!(
                "use lower-case letters, digits, `-` and `_`, starting with a letter or digit, \
                 at most {MAX_NAME} of them"
            )),
        ),
        _ => {}
    }

    let mut b = StepBuilder::default();
    for entry in entries {
        let key = entry.key.as_str().unwrap_or("");
        let value = &entry.value;
        match key {
            "id" => {}
            "name" => b.name = ctx.value::<String>("name", value, diags).map(|n| n.value),
            "action" => {
                b.bodies.push(("action", entry.key.span));
                b.action = ctx.value::<String>("action", value, diags);
            }
            "with" => b.with = Some((entry.key.span, value.clone())),
            "run" => {
                b.bodies.push(("run", entry.key.span));
                b.run = shell_line(&ctx, value, diags);
            }
            "cmd" => {
                b.bodies.push(("cmd", entry.key.span));
                b.cmd = argv(&ctx, value, diags);
            }
            "needs" => b.needs = ctx.step_refs("needs", value, diags),
            "after" => b.after = ctx.step_refs("after", value, diags),
            "when" => b.when = ctx.value::<When>("when", value, diags),
            "if" => b.condition = ctx.value::<String>("if", value, diags),
            "env" => b.env = env(&ctx, value, diags),
            "timeout" => b.timeout = ctx.value("timeout", value, diags),
            "retry" => b.retry = read_retry(&ctx, value, diags),
            "compensate" => b.compensate = ctx.value::<String>("compensate", value, diags),
            "creates" => {
                if ctx.value::<String>("creates", value, diags).is_some() {
                    b.creates = Some(value.clone());
                }
            }
            "ok_codes" => b.ok_codes = ok_codes(&ctx, value, diags),
            "keep_children" => b.keep_children = ctx.value::<bool>("keep_children", value, diags),
            "confirm" => b.confirm = confirm(&ctx, value, diags),
            "for_each" => b.for_each = Some(for_each(&ctx, value, diags)),
            "key" => b.key = item_key(&ctx, value, diags).map(|k| (entry.key.span, k)),
            "max_parallel" => {
                b.max_parallel = step_max_parallel(&ctx, value, diags).map(|m| (entry.key.span, m));
            }
            "priority" => {
                b.priority =
                    item_template(&ctx, "priority", value, diags).map(|p| (entry.key.span, p));
            }
            "max_failed" => {
                b.max_failed = max_failed(&ctx, value, diags).map(|m| (entry.key.span, m));
            }
            "workers" => {
                // `workers: false` is the same as none.
                b.workers = workers(&ctx, value, diags).map(|w| w.map(|w| (entry.key.span, w)));
            }
            "on_item" => b.on_item = Some((entry.key.span, on_item(&ctx, value, diags))),
            _ => ctx.unknown_key(&entry.key, STEP_KEYS, diags),
        }
    }

    let body = b.body(&ctx, node, diags);
    let for_each = b.fan_out(&ctx, diags);
    let id = id?;
    Some(Step {
        id,
        name: b.name,
        body: body?,
        needs: b.needs,
        after: b.after,
        when: b
            .when
            .unwrap_or_else(|| Spanned::new(When::Success, node.span)),
        condition: b.condition,
        env: b.env,
        timeout: b.timeout,
        retry: b.retry,
        compensate: b.compensate,
        creates: b.creates,
        ok_codes: b.ok_codes,
        keep_children: b.keep_children,
        confirm: b.confirm,
        for_each: for_each?,
        on_item: b.on_item.and_then(|(_, o)| o),
        span: node.span,
    })
}

#[derive(Default)]
struct StepBuilder {
    name: Option<String>,
    bodies: Vec<(&'static str, crate::source::Span)>,
    action: Option<Spanned<String>>,
    with: Option<(crate::source::Span, Node)>,
    run: Option<Node>,
    cmd: Option<Vec<Node>>,
    needs: Vec<Spanned<String>>,
    after: Vec<Spanned<String>>,
    when: Option<Spanned<When>>,
    condition: Option<Spanned<String>>,
    env: Vec<(Spanned<String>, Node)>,
    timeout: Option<Spanned<crate::model::Duration>>,
    retry: Option<Spanned<crate::model::RetryPolicy>>,
    compensate: Option<Spanned<String>>,
    creates: Option<Node>,
    ok_codes: Option<Spanned<Vec<i32>>>,
    keep_children: Option<Spanned<bool>>,
    confirm: Option<Confirm>,
    /// `for_each` (the source, if it could be read).
    for_each: Option<Option<ItemSource>>,
    /// `key` (its key's span, the template).
    key: Option<(crate::source::Span, Node)>,
    /// `max_parallel` (its key's span, the number).
    max_parallel: Option<(crate::source::Span, Spanned<usize>)>,
    /// `priority` (its key's span, the template).
    priority: Option<(crate::source::Span, Node)>,
    /// `max_failed` (its key's span, the bound).
    max_failed: Option<(crate::source::Span, Spanned<MaxFailed>)>,
    /// `workers` (`None`: not given or broken; `Some(None)`: `false`).
    workers: Option<Option<(crate::source::Span, Spanned<Vec<String>>)>>,
    /// `on_item` (its key's span, the notification if it could be read).
    on_item: Option<(crate::source::Span, Option<OnItem>)>,
}

impl StepBuilder {
    /// Puts `for_each`, `key` and `max_parallel` together. `None`: one of
    /// them was wrong (already reported), so the step is left out; `Some(None)`:
    /// the step has no fan-out.
    fn fan_out(&mut self, ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<Option<ForEach>> {
        let Some(source) = self.for_each.take() else {
            // `key` and `max_parallel` only mean something for a work list;
            // said here, so a step-level `max_parallel` is not mistaken for
            // a limit on something else.
            for (name, at) in [
                ("key", self.key.as_ref().map(|k| k.0)),
                ("max_parallel", self.max_parallel.as_ref().map(|m| m.0)),
                ("priority", self.priority.as_ref().map(|p| p.0)),
                ("max_failed", self.max_failed.as_ref().map(|m| m.0)),
                (
                    "workers",
                    self.workers.as_ref().and_then(|w| w.as_ref()).map(|w| w.0),
                ),
                ("on_item", self.on_item.as_ref().map(|o| o.0)),
            ] {
                if let Some(at) = at {
                    diags.push(
                        Diagnostic::error(
                            "without-for-each",
                            at,
                            format!("`{name}` in {} has no `for_each` to apply to", ctx.owner),
                        )
                        .with_help(
                            "`key`, `max_parallel`, `priority`, `max_failed`, `workers` and `on_item` \
                             on a step belong to its `for_each:` list; the playbook's own \
                             `max_parallel` limits steps",
                        ),
                    );
                }
            }
            return (self.key.is_none()
                && self.max_parallel.is_none()
                && self.priority.is_none()
                && self.max_failed.is_none()
                && self.workers.as_ref().is_none_or(Option::is_none)
                && self.on_item.is_none())
            .then_some(None);
        };
        let source = source?;
        Some(Some(ForEach {
            span: source.nodes()[0].span,
            source,
            key: self.key.take().map(|(_, k)| k),
            max_parallel: self.max_parallel.take().map(|(_, m)| m),
            priority: self.priority.take().map(|(_, p)| p),
            max_failed: self.max_failed.take().map(|(_, m)| m),
            workers: self.workers.take().flatten().map(|(_, w)| w),
        }))
    }

    /// Checks that exactly one of action/run/cmd is given and builds the body.
    fn body(&mut self, ctx: &Ctx<'_>, step: &Node, diags: &mut Diagnostics) -> Option<StepBody> {
        if let Some((with_span, _)) = &self.with
            && !self.bodies.iter().any(|(k, _)| *k == "action")
        {
            diags.push(
                Diagnostic::error(
                    "with-without-action",
                    *with_span,
                    format!("`with` in {} has no `action` to configure", ctx.owner),
                )
                .with_help(
                    "`with` holds an action's parameters; for `run`/`cmd` use `env` instead",
                ),
            );
        }
        match self.bodies.as_slice() {
            [] => {
                diags.push(
                    Diagnostic::error(
                        "missing-body",
                        step.span,
                        format!(
                            "{} does nothing: it needs one of `action`, `run` or `cmd`",
                            ctx.owner
                        ),
                    )
                    .with_help(
                        "add `run: <shell line>`, `cmd: [program, arg]` or `action: <built-in>`",
                    ),
                );
                None
            }
            [(_, _)] => {
                if let Some(name) = self.action.take() {
                    let (anchor, with) = match self.with.take() {
                        Some((key_span, node)) => (key_span, Some(node)),
                        None => (name.span, None),
                    };
                    Some(StepBody::Action { name, with, anchor })
                } else if let Some(run) = self.run.take() {
                    Some(StepBody::Run(run))
                } else {
                    self.cmd.take().map(StepBody::Cmd)
                }
            }
            [(first, _), rest @ ..] => {
                for (kind, span) in rest {
                    diags.push(
                        Diagnostic::error(
                            "conflicting-body",
                            *span,
                            format!(
                                "{} has both `{first}` and `{kind}`; a step does exactly one thing",
                                ctx.owner
                            ),
                        )
                        .with_help("split it into two steps and link them with `needs`"),
                    );
                }
                None
            }
        }
    }
}

fn shell_line(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Node> {
    let line = ctx.value::<String>("run", node, diags)?;
    if line.trim().is_empty() {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!("`run` in {} is empty", ctx.owner),
        ));
        return None;
    }
    Some(node.clone())
}

fn argv(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Vec<Node>> {
    let Some(items) = node.as_seq() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `cmd` in {}: expected a list (an argv), found {}",
                    ctx.owner,
                    node.kind_name()
                ),
            )
            .with_help("write `cmd: [program, arg1, arg2]`, or use `run:` for a shell line"),
        );
        return None;
    };
    if items.is_empty() {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!("`cmd` in {} is empty", ctx.owner),
            )
            .with_help("the first item is the program to run"),
        );
        return None;
    }
    let mut ok = true;
    for item in items {
        if matches!(item.kind, NodeKind::Seq(_) | NodeKind::Map(_)) || item.is_null() {
            diags.push(Diagnostic::error(
                "invalid-type",
                item.span,
                format!(
                    "invalid `cmd` in {}: each argument must be text, found {}",
                    ctx.owner,
                    item.kind_name()
                ),
            ));
            ok = false;
        }
    }
    ok.then(|| items.to_vec())
}

fn env(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Vec<(Spanned<String>, Node)> {
    let Some(entries) = ctx.mapping("env", node, diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let Some(name) = ctx.value::<String>("env", &entry.key, diags) else {
            continue;
        };
        if !is_identifier(&name) {
            diags.push(Diagnostic::error(
                "invalid-name",
                name.span,
                format!(
                    "environment variable name `{}` in {} is not valid",
                    name.value, ctx.owner
                ),
            ));
            continue;
        }
        if ctx.value::<String>("env", &entry.value, diags).is_some() {
            out.push((name, entry.value.clone()));
        }
    }
    out
}

fn ok_codes(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Spanned<Vec<i32>>> {
    let codes = ctx.value::<Vec<i32>>("ok_codes", node, diags)?;
    if codes.is_empty() {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!(
                "`ok_codes` in {} is empty; no exit code could ever succeed",
                ctx.owner
            ),
        ));
        return None;
    }
    if let Some(bad) = codes.iter().find(|c| !(0..=255).contains(*c)) {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!(
                "exit code {bad} in `ok_codes` of {} is outside 0..=255",
                ctx.owner
            ),
        ));
        return None;
    }
    Some(codes)
}

/// `confirm: "question"` or `confirm: { prompt: "question", word: yes-wipe }`.
fn confirm(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Confirm> {
    let text = |key: &str, n: &Node, diags: &mut Diagnostics| {
        let t = ctx.value::<String>(key, n, diags)?;
        if t.value.trim().is_empty() {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    n.span,
                    format!("`{key}` in {} is empty", ctx.owner),
                )
                .with_help("say what the step will overwrite, e.g. `Replace the database?`"),
            );
            return None;
        }
        Some(n.clone())
    };
    if node.as_map().is_none() {
        let prompt = text("confirm", node, diags)?;
        return Some(Confirm {
            prompt,
            word: None,
            span: node.span,
        });
    }
    let entries = ctx.mapping("confirm", node, diags)?;
    let (mut prompt, mut word) = (None, None);
    for entry in entries {
        match entry.key.as_str().unwrap_or("") {
            "prompt" => prompt = text("prompt", &entry.value, diags),
            "word" => word = text("word", &entry.value, diags),
            _ => ctx.unknown_key(&entry.key, &["prompt", "word"], diags),
        }
    }
    if prompt.is_none() && !entries.iter().any(|e| e.key.as_str() == Some("prompt")) {
        diags.push(
            Diagnostic::error(
                "missing-key",
                node.span,
                format!("`confirm` in {} has no `prompt`", ctx.owner),
            )
            .with_help("e.g. `confirm: { prompt: \"Replace every database?\", word: restore }`"),
        );
    }
    Some(Confirm {
        prompt: prompt?,
        word,
        span: node.span,
    })
}

/// Fan-out keys of issue 17 that this ward does not have yet: refused with
/// a message that says so, rather than "unknown key", so nobody thinks a
/// typo is the problem.
/// `for_each:` a YAML list, one template that gives a list (`"{{ users }}"`),
/// or `{ lines | json | csv: PATH }` / `{ command: [ARGV] }` /
/// `{ pg_query: { sql, db } }` with their options. `None` when it is none of those (reported).
fn for_each(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<ItemSource> {
    let help = "write a list (`for_each: [a, b]`), a variable holding one \
                (`for_each: \"{{ users }}\"`), or items read when the step starts: \
                `{ lines: users.txt }`, `{ json: users.json }`, `{ csv: users.csv }`, \
                `{ command: [ls, /srv/homes] }`, \
                `{ pg_query: { sql: \"SELECT name FROM users\", db: { dbname: app } } }`";
    match &node.kind {
        NodeKind::Seq(_) => Some(ItemSource::List(node.clone())),
        NodeKind::Scalar(s) if !node.is_null() && crate::template::is_template(&s.text) => {
            Some(ItemSource::List(node.clone()))
        }
        NodeKind::Map(_) => for_each_source(ctx, node, help, diags),
        NodeKind::Scalar(_) => {
            diags.push(
                Diagnostic::error(
                    "invalid-type",
                    node.span,
                    format!(
                        "invalid `for_each` in {}: expected a list, found {}",
                        ctx.owner,
                        node.kind_name()
                    ),
                )
                .with_help(help),
            );
            None
        }
    }
}

/// The keys each `for_each:` mapping may have, by its source key.
const SOURCE_KEYS: &[(&str, &[&str])] = &[
    ("lines", &["lines"]),
    ("json", &["json", "at"]),
    ("csv", &["csv", "delimiter", "header"]),
    ("command", &["command", "format"]),
    ("pg_query", &["pg_query"]),
];

/// `for_each: { lines | json | csv | command | pg_query: ... }` with its
/// options.
/// Exactly one source key; the options of another source are refused.
fn for_each_source(
    ctx: &Ctx<'_>,
    node: &Node,
    help: &str,
    diags: &mut Diagnostics,
) -> Option<ItemSource> {
    let entries = node.as_map()?;
    let sources: Vec<&crate::yaml::Entry> = entries
        .iter()
        .filter(|e| SOURCE_KEYS.iter().any(|(k, _)| e.key.as_str() == Some(k)))
        .collect();
    // `query` was the name this source had in the plans (and the docs of
    // wards without it): said plainly, not as a typo.
    if let Some(q) = entries.iter().find(|e| e.key.as_str() == Some("query")) {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                q.key.span,
                format!(
                    "`for_each.query` in {} is not a source: the rows of a PostgreSQL query \
                     are `for_each: {{ pg_query: {{ sql: ..., db: ... }} }}`",
                    ctx.owner
                ),
            )
            .with_help(
                "e.g. `for_each: { pg_query: { sql: \"SELECT name FROM users\", \
                 db: { host: db1, dbname: app, user: ward } } }`",
            ),
        );
        return None;
    }
    let source = match sources.as_slice() {
        [one] => *one,
        [] => {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    node.span,
                    format!(
                        "`for_each` in {} has none of `lines`, `json`, `csv`, `command` or `pg_query`",
                        ctx.owner
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        [_, second, ..] => {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    second.key.span,
                    format!(
                        "`for_each` in {} has more than one source; give one of `lines`, `json`, `csv`, \
                         `command` or `pg_query`",
                        ctx.owner
                    ),
                )
                .with_help(help),
            );
            return None;
        }
    };
    let kind = source.key.as_str().unwrap_or("");
    let allowed = SOURCE_KEYS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&[][..], |(_, keys)| *keys);
    let mut ok = true;
    for entry in entries {
        if !allowed.contains(&entry.key.as_str().unwrap_or("")) {
            ctx.unknown_key(&entry.key, allowed, diags);
            ok = false;
        }
    }
    let option = |name: &str| entries.iter().find(|e| e.key.as_str() == Some(name));
    let path = |diags: &mut Diagnostics| -> Option<Node> {
        let what = format!("for_each.{kind}");
        let text = ctx.value::<String>(&what, &source.value, diags)?;
        if text.value.trim().is_empty() {
            diags.push(Diagnostic::error(
                "invalid-value",
                source.value.span,
                format!("`for_each.{kind}` in {} is empty", ctx.owner),
            ));
            return None;
        }
        Some(source.value.clone())
    };
    let made = match kind {
        "lines" => path(diags).map(ItemSource::Lines),
        "pg_query" => pg_query(ctx, &source.value, diags),
        "json" => {
            let path = path(diags);
            let at = match option("at") {
                Some(e) => {
                    let at = ctx.value::<String>("for_each.at", &e.value, diags)?;
                    if !(at.value.is_empty() || at.value.starts_with('/')) {
                        diags.push(
                            Diagnostic::error(
                                "invalid-value",
                                e.value.span,
                                format!(
                                    "`for_each.at` in {} is not a JSON pointer: it starts with `/`",
                                    ctx.owner
                                ),
                            )
                            .with_help("e.g. `at: /users` for the list under `users`"),
                        );
                        return None;
                    }
                    Some(at)
                }
                None => None,
            };
            path.map(|path| ItemSource::Json { path, at })
        }
        "csv" => {
            let path = path(diags);
            let delimiter = match option("delimiter") {
                Some(e) => {
                    let d = ctx.value::<String>("for_each.delimiter", &e.value, diags)?;
                    let mut chars = d.value.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) if c != '"' && c != '\n' && c != '\r' => {
                            Some(Spanned::new(c, e.value.span))
                        }
                        _ => {
                            diags.push(
                                Diagnostic::error(
                                    "invalid-value",
                                    e.value.span,
                                    format!(
                                        "`for_each.delimiter` in {} must be one character \
                                         (not a quote or a line break)",
                                        ctx.owner
                                    ),
                                )
                                .with_help("e.g. `delimiter: \";\"` or `delimiter: \"\\t\"`"),
                            );
                            return None;
                        }
                    }
                }
                None => None,
            };
            let header = match option("header") {
                Some(e) => Some(ctx.value::<bool>("for_each.header", &e.value, diags)?),
                None => None,
            };
            path.map(|path| ItemSource::Csv {
                path,
                delimiter,
                header,
            })
        }
        _ => {
            let json = match option("format") {
                Some(e) => match e.value.as_str() {
                    Some("json") => true,
                    Some("lines") => false,
                    _ => {
                        diags.push(
                            Diagnostic::error(
                                "invalid-value",
                                e.value.span,
                                format!(
                                    "`for_each.format` in {} must be `lines` or `json`",
                                    ctx.owner
                                ),
                            )
                            .with_help(
                                "`lines`: one item per non-blank line it prints; `json`: it \
                                 prints a JSON array",
                            ),
                        );
                        return None;
                    }
                },
                None => false,
            };
            let argv = match source.value.as_seq() {
                Some(argv) if !argv.is_empty() => argv,
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "invalid-value",
                            source.value.span,
                            format!(
                                "`for_each.command` in {} must be a list of words that is not \
                                 empty: the program and its arguments (no shell)",
                                ctx.owner
                            ),
                        )
                        .with_help(
                            "e.g. `for_each: { command: [ls, /srv/homes] }`; for a pipe, \
                             `command: [bash, -c, \"ls /srv | grep -v tmp\"]`",
                        ),
                    );
                    return None;
                }
            };
            let mut words = Vec::with_capacity(argv.len());
            for word in argv {
                let text = ctx.value::<String>("for_each.command", word, diags)?;
                if text.value.is_empty() && words.is_empty() {
                    diags.push(Diagnostic::error(
                        "invalid-value",
                        word.span,
                        format!(
                            "the program of `for_each.command` in {} is empty",
                            ctx.owner
                        ),
                    ));
                    return None;
                }
                words.push(word.clone());
            }
            Some(ItemSource::Command { argv: words, json })
        }
    };
    if ok { made } else { None }
}

/// `for_each: { pg_query: { sql: SQL, db: { host, port, user, dbname,
/// passfile } } }`: pg.query's `sql` and `db` (no `save`: the rows are the
/// items). `db` is checked as pg.query's is once rendered, in validate.
fn pg_query(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<ItemSource> {
    let entries = ctx.mapping("for_each.pg_query", node, diags)?;
    let (mut sql, mut db, mut ok) = (None, None, true);
    for entry in entries {
        match entry.key.as_str().unwrap_or("") {
            "sql" => {
                let text = ctx.value::<String>("for_each.pg_query.sql", &entry.value, diags)?;
                if text.value.trim().is_empty() {
                    diags.push(Diagnostic::error(
                        "invalid-value",
                        entry.value.span,
                        format!("`for_each.pg_query.sql` in {} is empty", ctx.owner),
                    ));
                    return None;
                }
                sql = Some(entry.value.clone());
            }
            "db" => {
                ctx.mapping("for_each.pg_query.db", &entry.value, diags)?;
                db = Some(entry.value.clone());
            }
            _ => {
                ctx.unknown_key(&entry.key, &["sql", "db"], diags);
                ok = false;
            }
        }
    }
    let Some(sql) = sql else {
        diags.push(
            Diagnostic::error(
                "missing-key",
                node.span,
                format!("`for_each.pg_query` in {} has no `sql`", ctx.owner),
            )
            .with_help(
                "e.g. `pg_query: { sql: \"SELECT name, blocks FROM users\", db: { dbname: app } }`",
            ),
        );
        return None;
    };
    ok.then_some(ItemSource::PgQuery { sql, db })
}

/// `key:`, a template naming each item: text that is not empty.
fn item_key(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Node> {
    let text = ctx.value::<String>("key", node, diags)?;
    if text.value.trim().is_empty() {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!("`key` in {} is empty; each item needs an id", ctx.owner),
            )
            .with_help(
                "e.g. `key: \"{{ item.name }}\"`, or leave `key` out to use the item's own text",
            ),
        );
        return None;
    }
    Some(node.clone())
}

/// A per-item template that must be text (`priority:`): rendered for each
/// item later, in validate.
fn item_template(ctx: &Ctx<'_>, name: &str, node: &Node, diags: &mut Diagnostics) -> Option<Node> {
    let text = ctx.value::<String>(name, node, diags)?;
    if text.value.trim().is_empty() {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!("`{name}` in {} is empty", ctx.owner),
            )
            .with_help("e.g. `priority: \"{{ item.blocks + item.files * 3 }}\"`"),
        );
        return None;
    }
    Some(node.clone())
}

/// `on_item: { on: [succeeded, failed], email: { to, subject, body },
/// command: [ARGV...] }`: the templates are kept as written (rendered per
/// item at run time; checked in validate).
fn on_item(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<OnItem> {
    let help = "e.g. `on_item: { on: [failed], email: { to: \"{{ item }}@example.org\" } }`";
    let Some(entries) = node.as_map() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `on_item` in {}: expected a mapping, found {}",
                    ctx.owner,
                    node.kind_name()
                ),
            )
            .with_help(help),
        );
        return None;
    };
    let (mut on, mut email, mut command, mut ok) = (None, None, None, true);
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str().unwrap_or("") {
            "on" => {
                let items = one_or_many(value);
                let mut words = Vec::new();
                for item in items {
                    match ctx.value::<ItemEnd>("on_item.on", item, diags) {
                        Some(w) if !words.contains(&w.value) => words.push(w.value),
                        Some(_) => {}
                        None => ok = false,
                    }
                }
                if words.is_empty() && ok {
                    diags.push(
                        Diagnostic::error(
                            "invalid-value",
                            value.span,
                            format!(
                                "`on_item.on` in {} is empty: nothing would be sent",
                                ctx.owner
                            ),
                        )
                        .with_help("list `succeeded`, `failed` or both, or remove `on_item`"),
                    );
                    ok = false;
                }
                on = Some(words);
            }
            "email" => match item_email(ctx, value, diags) {
                Some(e) => email = Some(e),
                None => ok = false,
            },
            "command" => match on_item_argv(ctx, value, diags) {
                Some(c) => command = Some(c),
                None => ok = false,
            },
            _ => {
                ctx.unknown_key(&entry.key, &["on", "email", "command"], diags);
                ok = false;
            }
        }
    }
    if ok && email.is_none() && command.is_none() {
        diags.push(
            Diagnostic::error(
                "missing-key",
                node.span,
                format!(
                    "`on_item` in {} has neither `email` nor `command`",
                    ctx.owner
                ),
            )
            .with_help(help),
        );
        ok = false;
    }
    ok.then(|| OnItem {
        on: on.unwrap_or_else(|| vec![ItemEnd::Failed]),
        email,
        command,
        span: node.span,
    })
}

/// A value that may be one node or a list of them (`on: failed`, `on:
/// [succeeded, failed]`), as its nodes.
fn one_or_many(value: &Node) -> Vec<&Node> {
    match &value.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![value],
    }
}

/// `on_item.email: { to, subject, body }`; each a template that must be text.
fn item_email(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<ItemEmail> {
    let entries = ctx.mapping("on_item.email", node, diags)?;
    let text = |key: &str, n: &Node, diags: &mut Diagnostics| {
        let t = ctx.value::<String>(key, n, diags)?;
        if t.value.trim().is_empty() {
            diags.push(Diagnostic::error(
                "invalid-value",
                n.span,
                format!("`{key}` in {} is empty", ctx.owner),
            ));
            return None;
        }
        Some(n.clone())
    };
    let (mut to, mut subject, mut body, mut ok) = (None, None, None, true);
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str().unwrap_or("") {
            "to" => {
                let items = one_or_many(value);
                let mut out = Vec::new();
                for item in items {
                    match text("on_item.email.to", item, diags) {
                        Some(n) => out.push(n),
                        None => ok = false,
                    }
                }
                to = Some(out);
            }
            "subject" => {
                subject = text("on_item.email.subject", value, diags).or_else(|| {
                    ok = false;
                    None
                })
            }
            "body" => {
                body = text("on_item.email.body", value, diags).or_else(|| {
                    ok = false;
                    None
                })
            }
            _ => {
                ctx.unknown_key(&entry.key, &["to", "subject", "body"], diags);
                ok = false;
            }
        }
    }
    let to = match to {
        Some(to) if !to.is_empty() => to,
        _ => {
            if ok {
                diags.push(
                    Diagnostic::error(
                        "missing-key",
                        node.span,
                        format!("`on_item.email` in {} has no `to`", ctx.owner),
                    )
                    .with_help("e.g. `to: \"{{ item }}@example.org\"`"),
                );
            }
            return None;
        }
    };
    ok.then_some(ItemEmail {
        to,
        subject,
        body,
        span: node.span,
    })
}

/// `on_item.command: [PROGRAM, ARG...]`: words that are text (templates).
fn on_item_argv(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Vec<Node>> {
    let words = node.as_seq().filter(|w| !w.is_empty());
    let Some(words) = words else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `on_item.command` in {}: expected a list of words that is not empty",
                    ctx.owner
                ),
            )
            .with_help("e.g. `command: [notify-user, \"{{ item }}\"]`; no shell reads it"),
        );
        return None;
    };
    let mut ok = true;
    for w in words {
        if ctx.value::<String>("on_item.command", w, diags).is_none() {
            ok = false;
        }
    }
    ok.then(|| words.to_vec())
}

/// `workers:` `true` (any `ward worker` claims the items), `false` (none:
/// the run's ward runs them), or `{ tags: [T, ...] }` (only workers
/// started with every one of these `--tag`s). `Some(None)`: `false`.
fn workers(
    ctx: &Ctx<'_>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Option<Spanned<Vec<String>>>> {
    let help = "write `workers: true`, or `workers: { tags: [lustre] }` so that only workers \
                started with `ward worker --tag lustre` claim the items";
    let Some(map) = node.as_map() else {
        // `true`/`false` (anything else is said by `value`).
        let on = ctx.value::<bool>("workers", node, diags)?;
        return Some(on.value.then(|| Spanned::new(Vec::new(), node.span)));
    };
    let mut tags = Vec::new();
    for entry in map {
        match entry.key.as_str() {
            Some("tags") => {
                let list = ctx.value::<Vec<String>>("workers.tags", &entry.value, diags)?;
                for tag in list.value {
                    if !is_tag(&tag) {
                        diags.push(
                            Diagnostic::error(
                                "invalid-value",
                                entry.value.span,
                                format!(
                                    "tag `{tag}` of `workers` in {} is not a tag: use letters, \
                                     digits, `-`, `_` and `.`",
                                    ctx.owner
                                ),
                            )
                            .with_help(help),
                        );
                        return None;
                    }
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            }
            _ => ctx.unknown_key(&entry.key, &["tags"], diags),
        }
    }
    Some(Some(Spanned::new(tags, node.span)))
}

/// A worker tag (`ward worker --tag`): a short word.
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `max_failed:` a number of items (`3`) or a percentage of the step's
/// items (`"10%"`, 0 to 100).
fn max_failed(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Spanned<MaxFailed>> {
    let bad = |diags: &mut Diagnostics| {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!(
                    "`max_failed` in {} must be a number of items (`3`) or a percentage of \
                     them (`10%`, 0 to 100)",
                    ctx.owner
                ),
            )
            .with_help("once more items than that failed, no new item of the step starts"),
        );
        None
    };
    let Some(text) = node.as_str().map(str::trim) else {
        return bad(diags);
    };
    let value = match text.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p) if p <= 100 => MaxFailed::Percent(p),
            _ => return bad(diags),
        },
        None => match text.parse::<usize>() {
            Ok(n) => MaxFailed::Count(n),
            Err(_) => return bad(diags),
        },
    };
    Some(Spanned::new(value, node.span))
}

/// A step's `max_parallel:`, at least 1.
fn step_max_parallel(
    ctx: &Ctx<'_>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Spanned<usize>> {
    let n = ctx.value::<usize>("max_parallel", node, diags)?;
    if n.value == 0 {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!("`max_parallel` in {} must be at least 1", ctx.owner),
        ));
        return None;
    }
    Some(n)
}
