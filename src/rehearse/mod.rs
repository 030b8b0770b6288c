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
pub mod guard;
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
            if let Some(read) = p.get("read").and_then(|v| v.as_str()) {
                argv.extend(["--read".into(), read.to_owned()]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.yml");
        std::fs::write(&path, text).expect("write");
        let facts = crate::template::RunFacts::new(chrono::NaiveDateTime::default(), "r", &path);
        let plan = crate::check_file_with(&path, &[], facts)
            .expect("read")
            .plan
            .expect("valid");
        (dir, plan)
    }

    const PLAYBOOK: &str = "ward: 1\nname: r\nlock: shared\nvars: { dest: /srv/x, other: y }\nsteps:\n  \
        - id: check\n    action: verify\n    with: { path: snaps/latest, hashes: false }\n  \
        - id: stop\n    needs: [check]\n    action: service.stop\n    with: { stop: [/etc/init.d/app, stop], wait_gone: app }\n  \
        - id: mail\n    needs: [stop]\n    cmd: [sendmail, ops]\n  \
        - id: copy\n    needs: [stop]\n    run: cp -a a \"{{ dest }}\"\n  \
        - id: start\n    needs: [copy]\n    action: service.start\n    with: { unit: app.service }\n\
        rehearse:\n  targets: [dest]\n  fence: [mail]\n";

    #[test]
    fn fencing_replaces_service_steps_listed_steps_and_verify_and_takes_its_own_lock() {
        let (_dir, mut plan) = plan_of(PLAYBOOK);
        let r = plan.playbook.rehearse.clone().expect("rehearse");
        let fenced = fence(&mut plan, &r, Path::new("/usr/bin/ward"));
        let ids: Vec<&str> = fenced.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["check", "stop", "mail", "start"]);
        assert_eq!(plan.playbook.lock_name(), "shared.rehearse");
        let body = |id: &str| &plan.steps.iter().find(|s| s.id == id).expect("step").body;
        match body("check") {
            ResolvedBody::Cmd(argv) => {
                assert_eq!(
                    argv,
                    &["/usr/bin/ward", "verify", "snaps/latest", "--no-hashes"]
                )
            }
            other => panic!("{other:?}"),
        }
        for (id, program) in [
            ("stop", "/etc/init.d/app"),
            ("mail", "sendmail"),
            ("start", "systemctl"),
        ] {
            match body(id) {
                ResolvedBody::Run(script) => {
                    assert!(
                        script.contains(&format!("command -v -- {program}")),
                        "{script}"
                    )
                }
                other => panic!("{id}: {other:?}"),
            }
        }
        assert!(matches!(body("copy"), ResolvedBody::Run(s) if s.starts_with("cp -a")));
    }

    #[test]
    fn the_sandbox_sets_targets_and_the_operator_cannot() {
        let (_dir, plan) = plan_of(PLAYBOOK);
        let r = plan.playbook.rehearse.clone().expect("rehearse");
        let given = [("dest".to_owned(), "/srv/prod".to_owned())];
        let e = refuse_sandbox_vars(&r, &given).expect_err("refused");
        assert!(e.0.contains("--var dest"), "{e}");
        assert!(refuse_sandbox_vars(&r, &[("other".into(), "z".into())]).is_ok());
    }
}
