//! `for_each:` steps (fan-out): the item list, and each item's rendering.
//!
//! Validation renders the list (a YAML list or one template giving a list;
//! a `lines:` file is only named here, since an earlier step may write it)
//! and checks the step's templates once with a stand-in `item`, so that a
//! typo is reported with its file:line:column before anything runs. The
//! executor then renders the step once per item with [`ItemResolver`]:
//! templates are rendered here, in validate, and the executor below only
//! asks for the result (the pipeline's layering).

use std::sync::Arc;

use minijinja::Value;

use super::resolve::{self, ResolvedBody};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{ForEach, ItemSource, Step};
use crate::source::SourceFile;
use crate::template::{TemplateContext, Templates, locate_name, template_diagnostic};
use crate::yaml::{Node, NodeKind, from_node};

/// The item a step's templates are checked with when the real items are
/// only known at run time (a `lines:` file, an empty list).
const STAND_IN: &str = "item";

/// A fan-out step's work list, resolved.
#[derive(Debug)]
pub struct FanOut {
    /// Where the items come from.
    pub items: Items,
    /// `key:` as written (`None`: each item's own text).
    pub key: Option<String>,
    /// How many items of the step run at once.
    pub max_parallel: usize,
    /// `priority:` as written (`None`: items run in list order).
    pub priority: Option<String>,
    /// `max_failed:`: past this many failed items no new item starts.
    pub max_failed: Option<crate::model::MaxFailed>,
    /// `workers:`: `ward worker` processes carrying all these tags run the
    /// items (claimed from a shared store), not the run's ward.
    pub workers: Option<Vec<String>>,
    /// Renders the step for one item.
    pub each: Arc<ItemResolver>,
}

impl FanOut {
    /// The items, when known at validation (a YAML list, a variable).
    pub fn list(&self) -> Option<&[serde_json::Value]> {
        match &self.items {
            Items::List(items) => Some(items),
            _ => None,
        }
    }

    /// The `lines:` file, when the items are read from one.
    pub fn lines(&self) -> Option<&str> {
        match &self.items {
            Items::Lines(path) => Some(path),
            _ => None,
        }
    }
}

/// Where a fan-out step's items come from, after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Items {
    /// Known now: the rendered list.
    List(Vec<serde_json::Value>),
    /// The lines of this file (rendered path, relative to the playbook's
    /// folder), read when the step starts.
    Lines(String),
    /// The JSON array in this file (at the JSON pointer `at`, "" for the
    /// whole document), read when the step starts.
    Json {
        /// The rendered path, relative to the playbook's folder.
        path: String,
        /// A JSON pointer (RFC 6901); "" is the whole document.
        at: String,
    },
    /// The rows of this CSV file, read when the step starts.
    Csv {
        /// The rendered path, relative to the playbook's folder.
        path: String,
        /// The field separator.
        delimiter: char,
        /// The first row names the fields (items are objects), else items
        /// are lists of fields.
        header: bool,
    },
    /// What this program prints, run when the step starts.
    Command {
        /// The rendered argv (no shell).
        argv: Vec<String>,
        /// Its output is a JSON array (else one item per non-blank line).
        json: bool,
    },
    /// The rows of this SQL, run when the step starts.
    PgQuery {
        /// The rendered SQL.
        sql: String,
        /// How to reach the server (rendered; never a password: that comes
        /// from `passfile`, `PGPASSFILE` or `PGPASSWORD`).
        db: crate::pg::PgConn,
    },
}

impl Items {
    /// Where items read when the step starts come from, for `ward plan`
    /// ("the lines of users.txt"); `None` for a list known now.
    pub fn described(&self) -> Option<String> {
        match self {
            Items::List(_) => None,
            Items::Lines(path) => Some(format!("the lines of {path}")),
            Items::Json { path, at } if at.is_empty() => Some(format!("the JSON array in {path}")),
            Items::Json { path, at } => Some(format!("the JSON array at `{at}` in {path}")),
            Items::Csv { path, header, .. } => Some(format!(
                "the rows of the CSV file {path}{}",
                if *header { "" } else { " (no header)" }
            )),
            Items::Command { argv, json } => Some(format!(
                "the {} printed by `{}`",
                if *json { "JSON array" } else { "lines" },
                argv.join(" ")
            )),
            Items::PgQuery { sql, db } => Some(format!(
                "the rows of `{}` on {} ({})",
                sql.split_whitespace().collect::<Vec<_>>().join(" "),
                crate::pg::database_name(db),
                db.describe()
            )),
        }
    }
}

/// One item's work: what runs, with which environment.
#[derive(Debug)]
pub struct ItemWork {
    /// The step's body rendered for the item.
    pub body: ResolvedBody,
    /// The step's `env:` rendered for the item.
    pub env: Vec<(String, String)>,
}

/// An `on_item:` notification rendered for one item that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemNotice {
    /// `email.to`, rendered (empty: no mail).
    pub to: Vec<String>,
    /// `email.subject`, rendered (`None`: the default).
    pub subject: Option<String>,
    /// `email.body`, rendered (`None`: the default).
    pub body: Option<String>,
    /// `command`, rendered (`None`: no command).
    pub command: Option<Vec<String>>,
}

/// Renders a fan-out step for one item at run time. Holds what rendering
/// needs (the step as written, the run's template context), so that the
/// executor needs nothing from the parse or template stages.
pub struct ItemResolver {
    step: Step,
    source: Arc<SourceFile>,
    ctx: TemplateContext,
    templates: Templates,
}

impl std::fmt::Debug for ItemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The context holds secrets in the clear: never printed.
        f.debug_struct("ItemResolver")
            .field("step", &self.step.id.value)
            .finish_non_exhaustive()
    }
}

impl ItemResolver {
    /// The step's body and environment for `item`; on a template or
    /// parameter problem, what is wrong, with the file:line:column of the
    /// template, in one line.
    pub fn work(&self, item: &serde_json::Value) -> Result<ItemWork, String> {
        let ctx = with_item(&self.ctx, item);
        let mut diags = Diagnostics::default();
        let id = &self.step.id.value;
        let body = resolve::body(
            id,
            &self.step.body,
            &self.source,
            &ctx,
            &self.templates,
            &mut diags,
        );
        let (env, _) = resolve::env(
            id,
            &self.step,
            &self.source,
            &ctx,
            &self.templates,
            &mut diags,
        );
        match body {
            Some(body) if !diags.has_errors() => Ok(ItemWork { body, env }),
            _ => Err(self.first_problem(&diags)),
        }
    }

    /// The step's `on_item:`, if it has one.
    pub fn on_item(&self) -> Option<&crate::model::OnItem> {
        self.step.on_item.as_ref()
    }

    /// The step's `on_item:` rendered for `item`, which ended in `state`
    /// (`item_state` in the templates); `None` without `on_item`. A
    /// problem is one line with the template's file:line:column.
    pub fn notice(
        &self,
        item: &serde_json::Value,
        state: &str,
    ) -> Option<Result<ItemNotice, String>> {
        let on_item = self.step.on_item.as_ref()?;
        let ctx = with_item_state(&with_item(&self.ctx, item), state);
        let id = &self.step.id.value;
        let render = |field: &str, node: &Node| {
            self.templates
                .render(node.as_str().unwrap_or(""), &ctx.value)
                .map_err(|e| {
                    let what = format!("`{field}` of step `{id}`");
                    self.shown(&template_diagnostic(&e, node, &self.source, &what))
                })
        };
        let rendered = (|| {
            let mut notice = ItemNotice {
                to: Vec::new(),
                subject: None,
                body: None,
                command: None,
            };
            if let Some(e) = &on_item.email {
                for n in &e.to {
                    notice.to.push(render("on_item.email.to", n)?);
                }
                notice.subject = e
                    .subject
                    .as_ref()
                    .map(|n| render("on_item.email.subject", n))
                    .transpose()?;
                notice.body = e
                    .body
                    .as_ref()
                    .map(|n| render("on_item.email.body", n))
                    .transpose()?;
            }
            if let Some(c) = &on_item.command {
                let mut argv = Vec::with_capacity(c.len());
                for n in c {
                    argv.push(render("on_item.command", n)?);
                }
                notice.command = Some(argv);
            }
            Ok(notice)
        })();
        Some(rendered)
    }

    /// The names of the step's `env:` variables that do not use `item`:
    /// a `for_each.command` runs with those (the others mean something
    /// only per item).
    pub fn env_without_item(&self) -> Vec<String> {
        self.step
            .env
            .iter()
            .filter(|(_, v)| {
                let mut names = std::collections::HashSet::new();
                self.templates.node_names(v, &mut names);
                !names.contains("item")
            })
            .map(|(k, _)| k.value.clone())
            .collect()
    }

    /// The item's id: `key:` rendered, or the item's own text.
    pub fn key(&self, item: &serde_json::Value) -> Result<String, String> {
        self.key_or_diagnostic(item).map_err(|d| self.shown(&d))
    }

    /// [`ItemResolver::key`], with a problem as a diagnostic at `key:`.
    fn key_or_diagnostic(&self, item: &serde_json::Value) -> Result<String, Diagnostic> {
        let Some(key) = self.step.for_each.as_ref().and_then(|f| f.key.as_ref()) else {
            return Ok(item_text(item));
        };
        let ctx = with_item(&self.ctx, item);
        let text = key.as_str().unwrap_or("");
        match self.templates.render(text, &ctx.value) {
            Ok(k) if k.trim().is_empty() => Err(Diagnostic::error(
                "invalid-value",
                key.span,
                format!(
                    "`key` of step `{}` is empty for item {}",
                    self.step.id.value,
                    self.ctx.redactor.apply(&item_text(item))
                ),
            )
            .with_help("each item needs an id: make `key` give text for every item")),
            Ok(k) => Ok(k),
            Err(e) => Err(template_diagnostic(
                &e,
                key,
                &self.source,
                &format!("`key` of step `{}`", self.step.id.value),
            )),
        }
    }

    /// The item's `priority:` (0 without one): higher runs first. A
    /// result that is not a number is an error naming the item's key and
    /// the step, with the place of `priority:`.
    pub fn priority(&self, key: &str, item: &serde_json::Value) -> Result<f64, String> {
        self.priority_or_diagnostic(key, item)
            .map_err(|d| self.shown(&d))
    }

    fn priority_or_diagnostic(
        &self,
        key: &str,
        item: &serde_json::Value,
    ) -> Result<f64, Diagnostic> {
        let Some(node) = self
            .step
            .for_each
            .as_ref()
            .and_then(|f| f.priority.as_ref())
        else {
            return Ok(0.0);
        };
        let ctx = with_item(&self.ctx, item);
        let what = format!("`priority` of step `{}`", self.step.id.value);
        let text = match self
            .templates
            .render(node.as_str().unwrap_or(""), &ctx.value)
        {
            Ok(text) => text,
            Err(e) => return Err(template_diagnostic(&e, node, &self.source, &what)),
        };
        match text.trim().parse::<f64>() {
            Ok(p) if p.is_finite() => Ok(p),
            _ => Err(Diagnostic::error(
                "invalid-value",
                node.span,
                format!(
                    "{what} gives `{}` for item `{}`, not a number",
                    self.ctx.redactor.apply(text.trim()),
                    self.ctx.redactor.apply(key)
                ),
            )
            .with_help(
                "make `priority` give a number for every item, e.g. \
                 `priority: \"{{ item.blocks + item.files * 3 }}\"`",
            )),
        }
    }

    /// Checks the priority of each item of a list known at validation
    /// (a `lines:` list is checked when its step starts). The keys were
    /// checked first, so each renders.
    fn check_priorities(&self, items: &[serde_json::Value], diags: &mut Diagnostics) {
        if self
            .step
            .for_each
            .as_ref()
            .is_none_or(|f| f.priority.is_none())
        {
            return;
        }
        for item in items {
            let Ok(key) = self.key_or_diagnostic(item) else {
                return;
            };
            if let Err(d) = self.priority_or_diagnostic(&key, item) {
                // One is enough: the others are likely the same mistake.
                diags.push(d);
                return;
            }
        }
    }

    /// Checks the keys of a list known at validation: each one renders,
    /// is not empty, and is unique (a `lines:` list is checked when its
    /// step starts, with the same rule).
    fn check_keys(
        &self,
        items: &[serde_json::Value],
        span: crate::source::Span,
        diags: &mut Diagnostics,
    ) {
        let mut seen: std::collections::HashMap<String, usize> =
            std::collections::HashMap::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let key = match self.key_or_diagnostic(item) {
                Ok(k) => k,
                Err(d) => {
                    // One is enough: the same template fails the same way.
                    diags.push(d);
                    return;
                }
            };
            if key.is_empty() {
                diags.push(Diagnostic::error(
                    "invalid-value",
                    span,
                    format!(
                        "item {} of `for_each` in step `{}` is empty; each item needs an id",
                        position + 1,
                        self.step.id.value
                    ),
                ));
                return;
            }
            if let Some(first) = seen.insert(key.clone(), position) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-key",
                        span,
                        format!(
                            "items {} and {} of `for_each` in step `{}` both have the key `{}`",
                            first + 1,
                            position + 1,
                            self.step.id.value,
                            self.ctx.redactor.apply(&key)
                        ),
                    )
                    .with_help(
                        if self.step.for_each.as_ref().is_some_and(|f| f.key.is_some()) {
                            "each item needs its own id, kept across resumes: make `key:` give \
                         every item a different one"
                        } else {
                            "each item needs its own id, kept across resumes: remove the repeated \
                         item, or set `key:` to something unique, e.g. `key: \"{{ item.name }}\"`"
                        },
                    ),
                );
                return;
            }
        }
    }

    fn first_problem(&self, diags: &Diagnostics) -> String {
        diags
            .as_slice()
            .first()
            .map(|d| self.shown(d))
            .unwrap_or_else(|| "the step could not be rendered for this item".to_owned())
    }

    /// A diagnostic as one line, with its place and secrets masked.
    fn shown(&self, d: &Diagnostic) -> String {
        let message = self.ctx.redactor.apply(&d.message);
        format!("{message} ({}:{})", self.source.path().display(), d.span)
    }
}

/// An item as text: a string as it is, anything else as compact JSON (the
/// default key, and what `ward items` shows).
pub fn item_text(item: &serde_json::Value) -> String {
    match item {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The stand-in `item` of a step whose items may be objects or lists
/// known only when it starts: every field and index of it is one too.
#[derive(Debug)]
struct AnyItem;

impl minijinja::value::Object for AnyItem {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(AnyItem))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(STAND_IN)
    }
}

/// `ctx` with `item` bound (an `item` var of the playbook is hidden by it).
fn with_item(ctx: &TemplateContext, item: &serde_json::Value) -> TemplateContext {
    with_item_value(ctx, Value::from(minijinja::value::Serde(item)))
}

/// `ctx` with `item_state` bound: how the item ended, for `on_item:`.
fn with_item_state(ctx: &TemplateContext, state: &str) -> TemplateContext {
    let mut ctx = ctx.clone();
    ctx.value =
        minijinja::value::merge_maps([ctx.value, minijinja::context! { item_state => state }]);
    ctx
}

fn with_item_value(ctx: &TemplateContext, item: Value) -> TemplateContext {
    let mut ctx = ctx.clone();
    // The last map wins a lookup in minijinja 3 (`merge_maps`).
    ctx.value = minijinja::value::merge_maps([ctx.value, minijinja::context! { item }]);
    ctx
}

/// Resolves a step's `for_each:`: the list (or the file to read it from),
/// and the context to check the step's templates with (`item` bound to the
/// first item, or a stand-in). `None` when something was wrong (reported).
pub(super) fn resolve(
    step: &Step,
    for_each: &ForEach,
    source: &Arc<SourceFile>,
    ctx: &TemplateContext,
    templates: &Templates,
    playbook: &crate::model::Playbook,
    diags: &mut Diagnostics,
) -> Option<(FanOut, TemplateContext)> {
    let id = &step.id.value;
    // Problems with the step's other fields are reported and the step
    // still checked (the caller drops it); only a list that cannot be
    // made stops here.
    refuse_item_in_step_fields(step, templates, diags);
    if let Some(r) = &step.retry {
        diags.push(
            Diagnostic::error(
                "not-supported",
                r.span,
                format!("`retry` of step `{id}` is not built yet for a `for_each` step"),
            )
            .with_help(
                "each item has one attempt per run; `ward resume RUN_ID` runs the failed \
                 items again (and never a succeeded one)",
            ),
        );
    }
    let nodes = for_each.source.nodes();
    let node = nodes
        .first()
        .copied()
        .unwrap_or_else(|| match &for_each.source {
            ItemSource::List(n) => n,
            _ => unreachable!("a command has one word at least"),
        });
    // Items and keys reach command lines, `ward items`, the step's log and
    // the state database in the clear: neither may be made from a secret
    // (nor may a `command:` that lists them take one in its argv: its
    // output is recorded as the items).
    let mut secret = false;
    let fields = nodes
        .iter()
        .map(|n| ("for_each", *n))
        .chain(for_each.key.as_ref().map(|k| ("key", k)));
    for (field, n) in fields {
        let mut names = std::collections::HashSet::new();
        templates.node_names(n, &mut names);
        if let Some(used) = ctx.secrets.used_by(&names) {
            secret = true;
            diags.push(
                Diagnostic::error(
                    "secret-in-for-each",
                    locate_name(n, source, &used.var),
                    format!(
                        "`{field}` of step `{id}` uses {}; items and their keys are shown and \
                         recorded",
                        used.describe()
                    ),
                )
                .with_help(
                    "list what is not secret (e.g. user names) and read secrets through `env:`",
                ),
            );
        }
    }
    if secret {
        return None;
    }
    let render = |node: &Node, what: &str, diags: &mut Diagnostics| {
        templates
            .render_scalar(
                node,
                &ctx.value,
                &ctx.secrets,
                source,
                &format!("`for_each.{what}` of step `{id}`"),
            )
            .map_err(|d| diags.push(d))
            .ok()
            .map(|r| r.text)
    };
    let items = match &for_each.source {
        ItemSource::List(node) => Items::List(list(id, node, source, ctx, templates, diags)?),
        ItemSource::Lines(node) => Items::Lines(render(node, "lines", diags)?),
        ItemSource::Json { path, at } => Items::Json {
            path: render(path, "json", diags)?,
            at: at.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
        },
        ItemSource::Csv {
            path,
            delimiter,
            header,
        } => Items::Csv {
            path: render(path, "csv", diags)?,
            delimiter: delimiter.as_ref().map_or(',', |d| d.value),
            header: header.as_ref().is_none_or(|h| h.value),
        },
        ItemSource::Command { argv, json } => {
            let mut words = Vec::with_capacity(argv.len());
            let mut failed = false;
            for word in argv {
                match render(word, "command", diags) {
                    Some(w) => words.push(w),
                    None => failed = true,
                }
            }
            if failed {
                return None;
            }
            Items::Command {
                argv: words,
                json: *json,
            }
        }
        ItemSource::PgQuery { sql, db } => {
            let sql = render(sql, "pg_query.sql", diags)?;
            let db = pg_conn(id, &sql, db.as_ref(), source, ctx, templates, diags)?;
            Items::PgQuery { sql, db }
        }
    };
    let item_ctx = match &items {
        Items::List(list) => with_item(
            ctx,
            &list
                .first()
                .cloned()
                .unwrap_or_else(|| serde_json::Value::String(STAND_IN.to_owned())),
        ),
        Items::Lines(_) | Items::Command { json: false, .. } => {
            with_item(ctx, &serde_json::Value::String(STAND_IN.to_owned()))
        }
        // Objects or lists whose fields are known only when the step
        // starts: any field of the stand-in is a stand-in too, so
        // `{{ item.name }}` is checked as far as it can be (a typo in
        // another variable is still caught) and renders as `item`.
        Items::Json { .. }
        | Items::Csv { .. }
        | Items::Command { json: true, .. }
        | Items::PgQuery { .. } => with_item_value(ctx, Value::from_object(AnyItem)),
    };
    let each = Arc::new(ItemResolver {
        step: step.clone(),
        source: source.clone(),
        ctx: ctx.clone(),
        templates: Templates::new(),
    });
    if let Items::List(list) = &items {
        each.check_keys(list, node.span, diags);
        each.check_priorities(list, diags);
    }
    if let Some(on_item) = &step.on_item {
        check_on_item(
            step,
            on_item,
            &playbook.notify,
            source,
            &item_ctx,
            templates,
            diags,
        );
    }
    let fan = FanOut {
        items,
        key: for_each
            .key
            .as_ref()
            .and_then(|k| k.as_str().map(str::to_owned)),
        max_parallel: for_each
            .max_parallel
            .as_ref()
            .map_or(playbook.max_parallel, |m| m.value),
        priority: for_each
            .priority
            .as_ref()
            .and_then(|p| p.as_str().map(str::to_owned)),
        max_failed: for_each.max_failed.as_ref().map(|m| m.value),
        workers: for_each.workers.as_ref().map(|w| w.value.clone()),
        each,
    };
    Some((fan, item_ctx))
}

/// `for_each.pg_query.db` rendered and checked as pg.query's `db` is; a
/// password in it is refused (it would be shown in `ward plan` and kept in
/// the run's fingerprint): it comes from `passfile` or `PGPASSWORD`.
fn pg_conn(
    id: &str,
    sql: &str,
    node: Option<&Node>,
    source: &SourceFile,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<crate::pg::PgConn> {
    let Some(node) = node else {
        return Some(crate::pg::PgConn::default());
    };
    let what = || format!("`for_each.pg_query.db` of step `{id}`");
    let rendered = match templates.render_node(node, &ctx.value, &ctx.secrets, source, &what) {
        Ok((n, _)) => n,
        Err(errors) => {
            diags.extend(errors);
            return None;
        }
    };
    let conn = match from_node::<crate::pg::PgConn>(&rendered) {
        Ok(conn) => conn,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    e.span.unwrap_or(node.span),
                    format!(
                        "invalid `for_each.pg_query.db` in step `{id}`: {}",
                        e.message
                    ),
                )
                .with_help("`db` takes pg.query's keys: host, port, user, dbname, passfile"),
            );
            return None;
        }
    };
    let mut ok = true;
    // pg.query's own checks of its parameters, so both read `db` alike.
    let params = crate::action::PgQueryParams {
        sql: sql.to_owned(),
        db: conn.clone(),
        save: None,
    };
    for p in <crate::action::PgQuery as crate::action::Action>::check(&params) {
        ok = false;
        let d = Diagnostic::error(
            "invalid-value",
            node.span,
            format!("`for_each.pg_query` of step `{id}`: {}", p.message),
        );
        diags.push(match p.help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }
    let has_password =
        crate::pg::keywords(&conn).is_ok_and(|w| w.iter().any(|(k, _)| k == "password"));
    if has_password {
        ok = false;
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!(
                    "`for_each.pg_query.db` of step `{id}` holds a password; it would be shown \
                     and recorded with the step"
                ),
            )
            .with_help(
                "put it in a `.pgpass` file (`db.passfile`, mode 0600) or in `PGPASSWORD` \
                 (the step's `env:` or ward's environment)",
            ),
        );
    }
    ok.then_some(conn)
}

/// `on_item:`: a mail needs `notify.email` (its server and sender); no
/// template may use a secret (recipients, subjects and bodies leave the
/// machine and reach the step's log when a mail fails, in the clear); each
/// template renders with the stand-in item.
fn check_on_item(
    step: &Step,
    on_item: &crate::model::OnItem,
    notify: &crate::model::Notify,
    source: &Arc<SourceFile>,
    item_ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) {
    let id = &step.id.value;
    if let (Some(e), None) = (&on_item.email, &notify.email) {
        diags.push(
            Diagnostic::error(
                "missing-key",
                e.span,
                format!(
                    "`on_item.email` of step `{id}` needs the playbook's `notify.email`: its \
                     server, port, tls, sender and login send the mails"
                ),
            )
            .with_help(
                "add `notify: { email: { to: ops@example.org, from: ward@example.org, host: \
                 smtp.example.org } }` to the playbook",
            ),
        );
    }
    let ctx = with_item_state(item_ctx, "failed");
    for (field, n) in on_item.nodes() {
        let mut names = std::collections::HashSet::new();
        templates.node_names(n, &mut names);
        if let Some(used) = ctx.secrets.used_by(&names) {
            diags.push(
                Diagnostic::error(
                    "secret-in-on-item",
                    locate_name(n, source, &used.var),
                    format!(
                        "`{field}` of step `{id}` uses {}; notifications are sent and logged \
                         in the clear",
                        used.describe()
                    ),
                )
                .with_help("name the item or its state, never a secret"),
            );
            continue;
        }
        if let Err(d) = templates.render_scalar(
            n,
            &ctx.value,
            &ctx.secrets,
            source,
            &format!("`{field}` of step `{id}`"),
        ) {
            diags.push(d);
        }
    }
}

/// The list a `for_each:` list or template gives, as JSON values.
fn list(
    id: &str,
    node: &Node,
    source: &SourceFile,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<Vec<serde_json::Value>> {
    let what = || format!("`for_each` of step `{id}`");
    let rendered = match templates.render_node(node, &ctx.value, &ctx.secrets, source, &what) {
        Ok((n, _)) => n,
        Err(errors) => {
            diags.extend(errors);
            return None;
        }
    };
    if !matches!(rendered.kind, NodeKind::Seq(_)) {
        let found = if rendered.as_map().is_some() {
            "a mapping".to_owned()
        } else {
            format!(
                "{} `{}`",
                rendered.kind_name(),
                rendered.as_str().unwrap_or("")
            )
        };
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!("`for_each` of step `{id}` must give a list, but gives {found}"),
            )
            .with_help(
                "give a variable that holds a list (`vars: { users: [alice, bob] }`), or \
                 `for_each: { lines: FILE }` for one item per line",
            ),
        );
        return None;
    }
    match from_node::<Vec<serde_json::Value>>(&rendered) {
        Ok(items) => Some(items),
        Err(e) => {
            diags.push(Diagnostic::error(
                "invalid-value",
                e.span.unwrap_or(node.span),
                format!("invalid `for_each` in step `{id}`: {}", e.message),
            ));
            None
        }
    }
}

/// `if`, `creates` and `confirm` belong to the step as a whole (decided
/// once, before any item runs): an `item` there would silently mean the
/// first item, so it is refused.
fn refuse_item_in_step_fields(step: &Step, templates: &Templates, diags: &mut Diagnostics) {
    let id = &step.id.value;
    let mut fields: Vec<(&str, crate::source::Span, std::collections::HashSet<String>)> =
        Vec::new();
    if let Some(c) = &step.condition {
        fields.push(("if", c.span, templates.condition_names(&c.value)));
    }
    if let Some(c) = &step.creates {
        let mut names = std::collections::HashSet::new();
        templates.node_names(c, &mut names);
        fields.push(("creates", c.span, names));
    }
    if let Some(c) = &step.confirm {
        let mut names = std::collections::HashSet::new();
        templates.node_names(&c.prompt, &mut names);
        if let Some(w) = &c.word {
            templates.node_names(w, &mut names);
        }
        fields.push(("confirm", c.span, names));
    }
    for (field, span, names) in fields {
        if names.contains("item") {
            diags.push(
                Diagnostic::error(
                    "item-outside-item",
                    span,
                    format!(
                        "`{field}` of step `{id}` uses `item`, but it is decided once for the \
                         whole `for_each` step"
                    ),
                )
                .with_help("use `item` in `run`, `cmd`, `with`, `env`, `key` or `priority`"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The plan of a playbook of this text (in a folder that is gone
    /// afterwards: the tests only render templates).
    fn plan_of(text: &str) -> crate::plan::Plan {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yml");
        std::fs::write(&path, text).expect("write");
        let facts = crate::template::RunFacts::new(chrono::NaiveDateTime::default(), "r", &path);
        crate::check_file_with(&path, &[], facts)
            .expect("read")
            .plan
            .expect("valid")
    }

    use super::*;

    #[test]
    fn an_item_is_its_text_or_its_json() {
        assert_eq!(item_text(&serde_json::json!("alice")), "alice");
        assert_eq!(item_text(&serde_json::json!(7)), "7");
        assert_eq!(
            item_text(&serde_json::json!({"name": "bob"})),
            r#"{"name":"bob"}"#
        );
    }

    #[test]
    fn each_item_renders_its_own_body_env_and_key() {
        let plan = plan_of(
            "ward: 1\nname: p\nvars:\n  item: hidden\n  users: [{name: a, n: 1}, {name: b, n: 2}]\n\
             steps:\n  - id: s\n    for_each: \"{{ users }}\"\n    key: \"{{ item.name }}\"\n    \
             cmd: [echo, \"{{ item.n }}\"]\n    env: { WHO: \"{{ item.name }}\" }\n",
        );
        let fan = plan.steps[0].fan_out.as_ref().expect("a fan-out step");
        let Items::List(items) = &fan.items else {
            panic!("a list");
        };
        assert_eq!(items.len(), 2);
        // `item` is the item, not the playbook's var of that name.
        let work = fan.each.work(&items[1]).expect("renders");
        assert!(
            matches!(&work.body, ResolvedBody::Cmd(argv) if argv == &["echo", "2"]),
            "{:?}",
            work.body
        );
        assert_eq!(work.env, [("WHO".to_owned(), "b".to_owned())]);
        assert_eq!(fan.each.key(&items[0]).as_deref(), Ok("a"));
        // An item without the field fails with the template's place.
        let err = fan
            .each
            .work(&serde_json::json!("plain"))
            .expect_err("no `n`");
        assert!(err.contains("p.yml:10:"), "{err}");
    }
    #[test]
    fn on_item_renders_per_item_with_its_state_and_vars() {
        let plan = plan_of(
            "ward: 1\nname: p\nvars:\n  domain: example.org\nnotify:\n  email:\n    \
             to: ops@example.org\n    from: ward@example.org\n    host: localhost\n\
             steps:\n  - id: s\n    for_each: [alice, bob]\n    run: echo {{ item }}\n    \
             on_item:\n      email:\n        to: [\"{{ item }}@{{ domain }}\"]\n        \
             subject: \"{{ item }} {{ item_state }}\"\n      command: [tell, \"{{ item }}\"]\n",
        );
        let fan = plan.steps[0].fan_out.as_ref().expect("a fan-out step");
        let on = fan.each.on_item().expect("on_item");
        assert_eq!(on.on, [crate::model::ItemEnd::Failed], "the default");
        let notice = fan
            .each
            .notice(&serde_json::json!("bob"), "failed")
            .expect("on_item")
            .expect("renders");
        assert_eq!(
            notice,
            ItemNotice {
                to: vec!["bob@example.org".into()],
                subject: Some("bob failed".into()),
                body: None,
                command: Some(vec!["tell".into(), "bob".into()]),
            }
        );
    }
}
