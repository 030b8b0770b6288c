//! Rehearsals (`ward rehearse`): a restore playbook run for real into a
//! sandbox, then checked, then the sandbox torn down.
//!
//! A rehearsal is an ordinary run of the playbook (same session and
//! executor as `ward run`) with three things changed, all decided here and
//! none of them an `if rehearsal` inside the engine:
//!
//! - the variables the playbook's `rehearse:` names are set to the
//!   sandbox's folders and cluster ([`overrides`]);
//! - the plan is fenced ([`fence`]): steps that would touch production
//!   (every `service.stop`/`service.start`, and the ids in
//!   `rehearse.fence`) are replaced by a read-only check that their
//!   program exists, and `verify` steps by the read-only `ward verify`
//!   (the action would write a "verified" marker into the backup);
//! - the run takes its own lock (`<lock>.rehearse`): it touches no
//!   production data, so it must not hold off a backup.
//!
//! Afterwards [`checks`] compares what was restored with the backup.

pub mod checks;
pub mod dump;
pub mod sandbox;

use std::path::Path;

use crate::model::rehearse::Rehearse;
use crate::model::{NO_SPAN, Spanned};
use crate::plan::{Plan, ResolvedBody};

pub use checks::{CheckResult, Verdict};
pub use sandbox::{Sandbox, SandboxError};

/// The suffix of a rehearsal's lock name (`<lock>.rehearse`).
pub const LOCK_SUFFIX: &str = ".rehearse";

/// Why the command line's variables cannot be used for a rehearsal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OverrideError(pub String);

/// The `--var` pairs of a rehearsal: the user's, the playbook's
/// `rehearse.vars` (the user's win), and the sandbox's targets and
/// PostgreSQL settings, which nobody may set: a target given on the
/// command line could point the restore at production.
pub fn overrides(
    r: &Rehearse,
    sandbox: &Sandbox,
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, OverrideError> {
    let mut fixed: Vec<(String, String)> = sandbox
        .targets
        .iter()
        .map(|(name, dir)| (name.clone(), dir.display().to_string()))
        .collect();
    if let (Some(pg), Some(c)) = (&r.postgres, &sandbox.cluster) {
        fixed.push((pg.host.value.clone(), c.socket.display().to_string()));
        if let Some(port) = &pg.port {
            fixed.push((port.value.clone(), c.port.to_string()));
        }
        if let Some(user) = &pg.user {
            fixed.push((user.value.clone(), "postgres".into()));
        }
    }
    refuse_sandbox_vars(r, given)?;
    let mut out: Vec<(String, String)> = r
        .vars
        .iter()
        .filter(|(name, _)| !given.iter().any(|(g, _)| *g == name.value))
        .map(|(name, value)| (name.value.clone(), value.clone()))
        .collect();
    out.extend(given.iter().cloned());
    out.extend(fixed);
    Ok(out)
}

/// Refuses a `--var` for a variable the sandbox sets (a target, a
/// PostgreSQL setting): given on the command line, it could point the
/// restore at production.
pub fn refuse_sandbox_vars(r: &Rehearse, given: &[(String, String)]) -> Result<(), OverrideError> {
    let mut own = r.targets.iter().map(|t| &t.value).collect::<Vec<_>>();
    if let Some(pg) = &r.postgres {
        own.push(&pg.host.value);
        own.extend(pg.port.iter().chain(pg.user.iter()).map(|v| &v.value));
    }
    match given.iter().find(|(name, _)| own.contains(&name)) {
        Some((name, _)) => Err(OverrideError(format!(
            "--var {name}: `{name}` is set by the rehearsal's sandbox (it is named in the \
             playbook's `rehearse:`), so that the restore cannot write to production; leave it out"
        ))),
        None => Ok(()),
    }
}

/// A step a rehearsal does not run as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fenced {
    /// The step id.
    pub id: String,
    /// What runs instead.
    pub instead: String,
}

/// Fences the plan for a rehearsal (see the module's notes) and gives it
/// the rehearsal's lock. `ward` is this program, for `ward verify`.
pub fn fence(plan: &mut Plan, r: &Rehearse, ward: &Path) -> Vec<Fenced> {
    let lock = format!("{}{LOCK_SUFFIX}", plan.playbook.lock_name());
    plan.playbook.lock = Some(Spanned::new(lock, NO_SPAN));
    let mut out = Vec::new();
    for step in &mut plan.steps {
        let listed = r.fence.iter().any(|f| f.value == step.id);
        let (action, params) = match &step.body {
            ResolvedBody::Action(p) => (Some(p.action()), Some(p.to_json())),
            _ => (None, None),
        };
        let service = matches!(action, Some("service.stop" | "service.start"));
        if listed || service {
            let (program, what) = fenced_program(&step.body, params.as_ref());
            let script = fence_script(&step.id, program.as_deref(), &what);
            step.body = ResolvedBody::Run(script);
            step.name = Some(format!(
                "fenced: rehearsal (checks only that it could run: {what})"
            ));
            step.keep_children = false;
            step.creates = None;
            step.param_vars.clear();
            out.push(Fenced {
                id: step.id.clone(),
                instead: match &program {
                    Some(p) => format!("a check that `{p}` exists"),
                    None => "nothing (recorded)".into(),
                },
            });
        } else if action == Some("verify")
            && let Some(p) = &params
            && let Some(path) = p.get("path").and_then(|v| v.as_str())
        {
            let mut argv = vec![ward.display().to_string(), "verify".into(), path.into()];
            if let Some(m) = p.get("manifest").and_then(|v| v.as_str()) {
                argv.extend(["--manifest".into(), m.to_owned()]);
            }
            if p.get("hashes").and_then(|v| v.as_bool()) == Some(false) {
                argv.push("--no-hashes".into());
            }
            step.body = ResolvedBody::Cmd(argv);
            out.push(Fenced {
                id: step.id.clone(),
                instead: "`ward verify` (read-only: no verified marker is written into the backup)"
                    .into(),
            });
        }
    }
    out
}

/// The program a fenced step would have started, and what it would have done.
fn fenced_program(
    body: &ResolvedBody,
    params: Option<&serde_json::Value>,
) -> (Option<String>, String) {
    let argv_of = |key: &str| -> Option<Vec<String>> {
        params?.get(key)?.as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
    };
    match body {
        ResolvedBody::Cmd(argv) => (argv.first().cloned(), argv.join(" ")),
        ResolvedBody::Run(_) => (Some("bash".into()), "a bash script".into()),
        ResolvedBody::Action(p) => {
            let unit = params
                .and_then(|j| j.get("unit"))
                .and_then(|u| u.as_str())
                .map(str::to_owned);
            let argv = argv_of("stop").or_else(|| argv_of("start"));
            match (argv, unit) {
                (Some(argv), _) if !argv.is_empty() => (argv.first().cloned(), argv.join(" ")),
                (_, Some(unit)) => (Some("systemctl".into()), format!("systemctl ... {unit}")),
                _ => (None, format!("action {}", p.action())),
            }
        }
    }
}

/// The read-only check a fenced step runs: the program exists (a missing
/// one fails the rehearsal, as the real restore would fail there).
fn fence_script(id: &str, program: Option<&str>, what: &str) -> String {
    let q = crate::shell::quote;
    match program {
        Some(p) => format!(
            "if command -v -- {p} > /dev/null 2>&1; then\n  \
             echo {ok}\nelse\n  echo {missing} >&2\n  exit 1\nfi\n",
            p = q(p),
            ok = q(&format!(
                "fenced: rehearsal: step `{id}` not run ({what}); its program {p} exists"
            )),
            missing = q(&format!(
                "fenced: rehearsal: step `{id}` would run {what}, but {p} is not found: the real restore would fail here"
            )),
        ),
        None => format!(
            "echo {}\n",
            q(&format!("fenced: rehearsal: step `{id}` not run ({what})"))
        ),
    }
}
