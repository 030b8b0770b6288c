//! Renders a step's templates and type-checks its action parameters.

use crate::action::{self, ActionParams, ParamsError};
use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::{Duration, Playbook, RetryPolicy, Step, StepBody, When};
use crate::source::{SourceFile, Span};
use crate::template::{
    MASK, SecretUse, TemplateContext, Templates, is_secret_name, locate_name, template_diagnostic,
};
use crate::yaml::{Node, NodeKind};

/// A step with its templates rendered, ready to plan or run.
#[derive(Debug)]
pub struct ResolvedStep {
    /// Position in the playbook's `steps:`.
    pub index: usize,
    /// The step id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// What it does, rendered.
    pub body: ResolvedBody,
    /// Steps that must have succeeded.
    pub needs: Vec<String>,
    /// Steps that must have finished.
    pub after: Vec<String>,
    /// success / failure / always.
    pub when: When,
    /// The `if:` expression and what it evaluated to.
    pub condition: Option<Condition>,
    /// Environment for the child process, rendered.
    pub env: Vec<(String, String)>,
    /// Names of `env` entries whose values are secret (by their name, or
    /// made from a secret variable): masked wherever shown or stored.
    pub secret_env: Vec<String>,
    /// True if `creates` was made from a secret variable. Validation
    /// refuses that (`secret-in-creates`), so a step that passed has false;
    /// kept so every place that shows `creates` stays safe regardless.
    pub secret_creates: bool,
    /// Time limit for one attempt (step's own, else the default).
    pub timeout: Option<Duration>,
    /// Retry policy (step's own, else the default, else one attempt).
    pub retry: RetryPolicy,
    /// Step to run if this one succeeded but the run fails.
    pub compensate: Option<String>,
    /// Skip the step when this path exists.
    pub creates: Option<String>,
    /// Exit codes that count as success.
    pub ok_codes: Vec<i32>,
    /// Leave running what the step started in the background.
    pub keep_children: bool,
    /// Action parameters given as exactly one playbook variable
    /// (`force: "{{ replace_existing_db }}"`), as `(parameter, variable)`:
    /// a message about the parameter can then name the `--var` the
    /// operator can give, not a key inside the playbook.
    pub param_vars: Vec<(String, String)>,
    /// True if this step only runs to compensate another.
    pub compensation_only: bool,
    /// `confirm:`, rendered: asked before the step starts.
    pub confirm: Option<ResolvedConfirm>,
    /// `for_each:`: the step runs once per item (`body` and `env` above
    /// are rendered for the first item, or a stand-in, for plans).
    pub fan_out: Option<super::fan_out::FanOut>,
    /// Where the step is written.
    pub span: Span,
}

/// A step's `confirm:` with its templates rendered.
#[derive(Clone, Debug)]
pub struct ResolvedConfirm {
    /// The question.
    pub prompt: String,
    /// The word the operator types to go on (default: the playbook name).
    pub word: String,
}

/// An `if:` and its value at planning time.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The expression as written.
    pub expr: String,
    /// What it evaluated to.
    pub value: bool,
}

/// A step's work with templates rendered.
#[derive(Debug)]
pub enum ResolvedBody {
    /// A built-in action with typed, checked parameters.
    Action(std::sync::Arc<dyn ActionParams>),
    /// A bash line.
    Run(String),
    /// An argv.
    Cmd(Vec<String>),
}

impl ResolvedBody {
    /// What the step does, in one text: an action's plan line, the `run:`
    /// line, or the `cmd:` argv quoted for a shell (what `ward plan` and a
    /// `confirm:` question show).
    pub fn shown(&self) -> String {
        match self {
            ResolvedBody::Action(p) => p.describe(),
            ResolvedBody::Run(line) => line.trim_end().to_owned(),
            ResolvedBody::Cmd(argv) => argv
                .iter()
                .map(|a| crate::shell::quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl ResolvedStep {
    /// The environment as it may be shown: secret values masked.
    pub fn shown_env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| {
            let shown = if self.secret_env.contains(k) {
                MASK
            } else {
                v.as_str()
            };
            (k.as_str(), shown)
        })
    }

    /// `creates` as it may be shown.
    pub fn shown_creates(&self) -> Option<&str> {
        self.creates
            .as_deref()
            .map(|c| if self.secret_creates { MASK } else { c })
    }

    /// The secret values of the step with what they are (`env.NAME`,
    /// `creates`), in a stable order: the input of its resume fingerprint.
    pub fn secret_values(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| self.secret_env.contains(k))
            .map(|(k, v)| (format!("env.{k}"), v.as_str()))
            .collect();
        if self.secret_creates
            && let Some(c) = &self.creates
        {
            out.push(("creates".to_owned(), c.as_str()));
        }
        out
    }
}

impl ResolvedBody {
    /// `action`, `run` or `cmd`.
    pub fn kind(&self) -> &'static str {
        match self {
            ResolvedBody::Action(_) => "action",
            ResolvedBody::Run(_) => "run",
            ResolvedBody::Cmd(_) => "cmd",
        }
    }
}

pub(super) fn step(
    index: usize,
    step: &Step,
    playbook: &Playbook,
    ctx: &TemplateContext,
    templates: &Templates,
    compensation_only: bool,
    diags: &mut Diagnostics,
) -> Option<ResolvedStep> {
    let id = &step.id.value;
    let source = &playbook.source;
    let before = diags.error_count();
    if !ctx.unrendered.is_empty() && reads_unrendered(step, ctx, templates) {
        // The var's own error says why; rendering with no value would only
        // add "undefined variable" for every use of it.
        if before == 0 {
            // Not expected (the var's failure is an error), but a step must
            // never pass validation without its values.
            diags.push(Diagnostic::error(
                "undefined-variable",
                step.span,
                format!("step `{id}` uses a variable that has no value"),
            ));
        }
        return None;
    }

    // A fan-out step's templates are checked with `item` bound (to the
    // first item, or a stand-in); each item is rendered again at run time.
    if let Some(f) = step.for_each.as_ref().filter(|_| compensation_only) {
        // A compensation runs once, outside the DAG, to undo one step.
        diags.push(
            Diagnostic::error(
                "not-supported",
                f.span,
                format!("step `{id}` is a compensation step and cannot have `for_each`"),
            )
            .with_help(
                "undo the whole list in one command, or give the compensation its own list later",
            ),
        );
        return None;
    }
    let fan = match &step.for_each {
        Some(f) => Some(super::fan_out::resolve(
            step, f, source, ctx, templates, playbook, diags,
        )?),
        None => None,
    };
    let (fan_out, ctx) = match fan {
        Some((fan, item_ctx)) => (Some(fan), std::borrow::Cow::Owned(item_ctx)),
        None => (None, std::borrow::Cow::Borrowed(ctx)),
    };
    let ctx: &TemplateContext = &ctx;

    let secrets = &ctx.secrets;
    let body = body(id, &step.body, source, ctx, templates, diags);
    let (env, secret_env) = env(id, step, source, ctx, templates, diags);

    let mut secret_creates = false;
    let creates = step.creates.as_ref().and_then(|node| {
        templates
            .render_scalar(
                node,
                &ctx.value,
                secrets,
                source,
                &format!("`creates` of step `{id}`"),
            )
            .map_err(|d| diags.push(d))
            .ok()
            .and_then(|r| match &r.secret {
                // `creates` is a path: it is stored with the step's state,
                // shown in its skip reason, events and `ward status`, and
                // tested on disk where any user may list it. Masking it in
                // all those places would hide what the step checks; a
                // secret has no business in a file name, so refuse it.
                Some(used) => {
                    diags.push(
                        Diagnostic::error(
                            "secret-in-creates",
                            locate_name(node, source, &used.var),
                            format!(
                                "`creates` of step `{id}` uses {}; the path is stored and shown with the step's state",
                                used.describe()
                            ),
                        )
                        .with_help(
                            "name the marker file without the secret (e.g. after the step id or `ward.date`)",
                        ),
                    );
                    secret_creates = true;
                    None
                }
                None => Some(r.text),
            })
    });

    let condition = step.condition.as_ref().and_then(|c| {
        match templates.eval_condition(&c.value, &ctx.value) {
            Ok(value) => Some(Condition {
                expr: c.value.clone(),
                value,
            }),
            Err((e, template)) => {
                let node = Node::plain(template, c.span);
                diags.push(template_diagnostic(
                    &e,
                    &node,
                    source,
                    &format!("`if` of step `{id}`"),
                ));
                None
            }
        }
    });

    if let Some(c) = step.confirm.as_ref().filter(|_| compensation_only) {
        // Compensations run after a failure, often unattended, to undo
        // work: a question there could only leave the undo half done.
        diags.push(
            Diagnostic::error(
                "invalid-value",
                c.span,
                format!("step `{id}` is a compensation step and cannot have `confirm`"),
            )
            .with_help("put `confirm` on the step whose work it undoes"),
        );
    }
    let confirm = step.confirm.as_ref().and_then(|c| {
        // Shown at a terminal and recorded with the run: no secrets.
        let mut text = |node: &Node, key: &str| {
            let r = templates
                .render_scalar(node, &ctx.value, secrets, source, &format!("`{key}` of step `{id}`"))
                .map_err(|d| diags.push(d))
                .ok()?;
            if let Some(used) = &r.secret {
                diags.push(
                    Diagnostic::error(
                        "secret-in-confirm",
                        locate_name(node, source, &used.var),
                        format!(
                            "`{key}` of step `{id}` uses {}; the question is shown and recorded",
                            used.describe()
                        ),
                    )
                    .with_help("ask without the secret"),
                );
                return None;
            }
            Some(r.text)
        };
        let prompt = text(&c.prompt, "confirm");
        let word = match &c.word {
            Some(w) => text(w, "confirm.word"),
            None => Some(playbook.name.value.clone()),
        };
        let word = word?;
        if word.trim().is_empty() || word.chars().any(char::is_whitespace) {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    c.word.as_ref().map_or(c.span, |w| w.span),
                    format!("the word to type for `confirm` of step `{id}` is `{word}`; it must be one word"),
                )
                .with_help("e.g. `word: restore`"),
            );
            return None;
        }
        Some(ResolvedConfirm { prompt: prompt?, word })
    });

    if diags.error_count() > before {
        return None;
    }
    Some(ResolvedStep {
        index,
        id: id.clone(),
        name: step.name.clone(),
        body: body?,
        needs: step.needs.iter().map(|n| n.value.clone()).collect(),
        after: step.after.iter().map(|n| n.value.clone()).collect(),
        when: step.when.value,
        condition,
        env,
        secret_env,
        secret_creates,
        timeout: step
            .timeout
            .as_ref()
            .or(playbook.defaults.timeout.as_ref())
            .map(|t| t.value),
        // Items have one attempt per run (`retry` on a fan-out step is
        // refused); `defaults.retry` is not theirs either.
        retry: step
            .retry
            .as_ref()
            .or(playbook.defaults.retry.as_ref())
            .filter(|_| fan_out.is_none())
            .map(|r| r.value.clone())
            .unwrap_or_default(),
        compensate: step.compensate.as_ref().map(|c| c.value.clone()),
        creates,
        ok_codes: step
            .ok_codes
            .as_ref()
            .map_or_else(|| vec![0], |c| c.value.clone()),
        keep_children: step.keep_children.as_ref().is_some_and(|k| k.value),
        param_vars: match &step.body {
            StepBody::Action {
                with: Some(with), ..
            } => params_from_vars(with, playbook),
            _ => Vec::new(),
        },
        compensation_only,
        confirm,
        fan_out,
        span: step.span,
    })
}

/// Renders a step's `run`, `cmd` or action parameters; `None` when a
/// problem was reported. Also used per item of a fan-out step
/// ([`super::fan_out`]), with `item` in `ctx`.
pub(super) fn body(
    id: &str,
    body: &StepBody,
    source: &SourceFile,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<ResolvedBody> {
    let secrets = &ctx.secrets;
    // A secret on a command line is visible to every user (`ps`, /proc) and
    // would be recorded with the step: refuse it and point at `env:`.
    let refuse = |node: &Node, key: &str, used: &SecretUse| {
        Diagnostic::error(
            "secret-in-command",
            locate_name(node, source, &used.var),
            format!(
                "`{key}` of step `{id}` uses {}; a command line is visible to every user of the machine",
                used.describe()
            ),
        )
        .with_help(format!(
            "pass it through `env:` instead, e.g. `env: {{ SECRET_VALUE: \"{{{{ {} }}}}\" }}`, and read `$SECRET_VALUE` in the command",
            used.var
        ))
    };
    match body {
        StepBody::Run(node) => templates
            .render_scalar(
                node,
                &ctx.value,
                secrets,
                source,
                &format!("`run` of step `{id}`"),
            )
            .map_err(|d| diags.push(d))
            .ok()
            .and_then(|r| match &r.secret {
                Some(used) => {
                    diags.push(refuse(node, "run", used));
                    None
                }
                None => Some(ResolvedBody::Run(r.text)),
            }),
        StepBody::Cmd(items) => {
            let argv: Vec<Option<String>> = items
                .iter()
                .map(|item| {
                    let r = templates
                        .render_scalar(
                            item,
                            &ctx.value,
                            secrets,
                            source,
                            &format!("`cmd` of step `{id}`"),
                        )
                        .map_err(|d| diags.push(d))
                        .ok()?;
                    if let Some(used) = &r.secret {
                        diags.push(refuse(item, "cmd", used));
                        return None;
                    }
                    Some(r.text)
                })
                .collect();
            argv.into_iter()
                .collect::<Option<Vec<_>>>()
                .map(ResolvedBody::Cmd)
        }
        StepBody::Action { name, with, anchor } => action_params(
            id,
            name,
            with.as_ref(),
            *anchor,
            source,
            ctx,
            templates,
            diags,
        )
        .map(ResolvedBody::Action),
    }
}

/// Renders a step's `env:`: the values, and the names whose values are
/// secret. Also used per item of a fan-out step.
pub(super) fn env(
    id: &str,
    step: &Step,
    source: &SourceFile,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> (Vec<(String, String)>, Vec<String>) {
    let secrets = &ctx.secrets;
    let mut secret_env = Vec::new();
    let env: Vec<(String, String)> = step
        .env
        .iter()
        .filter_map(|(k, v)| {
            let r = templates
                .render_scalar(
                    v,
                    &ctx.value,
                    secrets,
                    source,
                    &format!("`env.{}` of step `{id}`", k.value),
                )
                .map_err(|d| diags.push(d))
                .ok()?;
            if r.secret.is_some() || is_secret_name(&k.value) {
                secret_env.push(k.value.clone());
            }
            Some((k.value.clone(), r.text))
        })
        .collect();
    (env, secret_env)
}

/// The top-level parameters of `with` that are exactly `{{ var }}` for a
/// variable of the playbook (see [`ResolvedStep::param_vars`]).
fn params_from_vars(with: &Node, playbook: &Playbook) -> Vec<(String, String)> {
    let Some(entries) = with.as_map() else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let key = e.key.as_str()?;
            let text = e.value.as_str()?.trim();
            let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
            let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
            playbook
                .vars
                .iter()
                .any(|v| v.name.value == inner)
                .then(|| (key.to_owned(), inner.to_owned()))
        })
        .collect()
}

/// True if any template of `step` reads a var that has no value.
fn reads_unrendered(step: &Step, ctx: &TemplateContext, templates: &Templates) -> bool {
    let mut names = std::collections::HashSet::new();
    match &step.body {
        StepBody::Run(node) => templates.node_names(node, &mut names),
        StepBody::Cmd(items) => items
            .iter()
            .for_each(|i| templates.node_names(i, &mut names)),
        StepBody::Action { with, .. } => {
            if let Some(w) = with {
                templates.node_names(w, &mut names);
            }
        }
    }
    step.env
        .iter()
        .for_each(|(_, v)| templates.node_names(v, &mut names));
    if let Some(c) = &step.creates {
        templates.node_names(c, &mut names);
    }
    if let Some(c) = &step.condition {
        names.extend(templates.condition_names(&c.value));
    }
    if let Some(f) = &step.for_each {
        for n in f.source.nodes() {
            templates.node_names(n, &mut names);
        }
        if let Some(k) = &f.key {
            templates.node_names(k, &mut names);
        }
    }
    ctx.reads_unrendered(&names)
}

#[allow(clippy::too_many_arguments)]
fn action_params(
    id: &str,
    name: &crate::model::Spanned<String>,
    with: Option<&Node>,
    anchor: Span,
    source: &SourceFile,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<std::sync::Arc<dyn ActionParams>> {
    let Some(def) = action::lookup(&name.value) else {
        let help = suggest(&name.value, action::names()).unwrap_or_else(|| {
            format!(
                "built-in actions are {}; for anything else use `run:` or `cmd:`",
                action::names()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        diags.push(
            Diagnostic::error(
                "unknown-action",
                name.span,
                format!("unknown action `{}` in step `{id}`", name.value),
            )
            .with_help(help),
        );
        return None;
    };
    let empty = Node {
        kind: NodeKind::Map(Vec::new()),
        span: anchor,
    };
    let with = with.unwrap_or(&empty);
    let what = || format!("`with` of step `{id}`");
    let rendered = match templates.render_node(with, &ctx.value, &ctx.secrets, source, &what) {
        Ok((n, tainted)) if tainted.is_empty() => n,
        Ok((_, tainted)) => {
            // Parameters reach programs' command lines (rsync, pg_dumpall,
            // systemctl) and plans; a secret must come through `env:`.
            for (span, used) in tainted {
                diags.push(
                        Diagnostic::error(
                            "secret-in-parameter",
                            span,
                            format!(
                                "`with` of step `{id}` (action `{}`) uses {}; action parameters may reach a program's command line",
                                def.name,
                                used.describe()
                            ),
                        )
                        .with_help(
                            "give the secret to the action through the step's `env:` (e.g. PGPASSWORD) or a password file (`db.passfile`)",
                        ),
                    );
            }
            return None;
        }
        Err(errors) => {
            diags.extend(errors);
            return None;
        }
    };
    match (def.parse)(&rendered) {
        Ok(params) => Some(params),
        Err(ParamsError::Shape(e)) => {
            let message = match e.code {
                "unknown-key" | "missing-key" => format!(
                    "{} in `with` of step `{id}` (action `{}`)",
                    e.message, def.name
                ),
                _ => format!(
                    "invalid parameter in step `{id}` (action `{}`): {}",
                    def.name, e.message
                ),
            };
            // An error about the mapping as a whole points at `with:` itself.
            let span = e.span.filter(|s| *s != with.span).unwrap_or(anchor);
            diags.push(Diagnostic::error(e.code, span, message).with_help_opt(e.help));
            None
        }
        Err(ParamsError::Problems(problems)) => {
            for p in problems {
                let span = with
                    .as_map()
                    .and_then(|m| m.iter().find(|e| e.key.as_str() == Some(p.key)))
                    .map_or(anchor, |e| e.value.span);
                diags.push(
                    Diagnostic::error(
                        "invalid-parameter",
                        span,
                        format!("{} (step `{id}`, action `{}`)", p.message, def.name),
                    )
                    .with_help_opt(p.help),
                );
            }
            None
        }
    }
}
