//! `service.start`: start a service and check that it came up.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{argv_problem, name_like_option, proc_problems};
use super::service_stop::{run_checked, service_command, wait_until};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem, describe_status,
};
use crate::model::Duration;
use crate::procs;
use crate::procs::ProcMatch;

/// Starts a service through systemctl or a given command, then checks that
/// a process is running (`wait_up`) or that a command succeeds (`wait_cmd`).
pub struct ServiceStart;

/// Parameters of `service.start`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStartParams {
    /// systemd unit to start with `systemctl start` (give this or `start`).
    pub unit: Option<String>,
    /// Command (argv) that starts the service, e.g. `[fo_scheduler, --daemon, --reset]`.
    pub start: Option<Vec<String>>,
    /// A process that must be running (not a zombie) before the step succeeds: a name, or a matcher (`{name, cmdline, user, pidfile}`); with `pidfile`, the pid in the file must be alive.
    pub wait_up: Option<ProcMatch>,
    /// A command (argv) that must succeed before the step succeeds (tried until `timeout`).
    pub wait_cmd: Option<Vec<String>>,
    /// How long to wait for the service to come up (default 60s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// A restore's marker (`restore.marker`): while this file exists the
    /// service is not started (the step fails), unless the marker names
    /// this run (the restore starting it itself).
    pub blocked_by: Option<String>,
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

impl Action for ServiceStart {
    const NAME: &'static str = "service.start";
    const SUMMARY: &'static str = "start a service and check that it is up";
    type Params = ServiceStartParams;

    fn check(p: &ServiceStartParams) -> Vec<ParamProblem> {
        let mut out = Vec::new();
        match (&p.unit, &p.start) {
            (None, None) => out.push(
                ParamProblem::new(
                    "",
                    "`service.start` needs `unit` (systemd) or `start` (a command)",
                )
                .help("e.g. `unit: fossology` or `start: [fo_scheduler, --daemon, --reset]`"),
            ),
            (Some(_), Some(_)) => out.push(ParamProblem::new(
                "start",
                "give either `unit` or `start`, not both",
            )),
            (_, Some(argv)) => out.extend(argv_problem("start", argv)),
            (Some(unit), None) => out.extend(name_like_option("unit", unit)),
        }
        if let Some(argv) = &p.wait_cmd {
            out.extend(argv_problem("wait_cmd", argv));
        }
        if let Some(m) = &p.wait_up {
            out.extend(proc_problems("wait_up", m.problems("`wait_up`")));
        }
        out
    }

    fn perform(p: &ServiceStartParams, ctx: &ActionCtx) -> ActionResult {
        if let Some(marker) = &p.blocked_by {
            let path = ctx.path(marker);
            let found = crate::fs::restore_marker::blocking(&path)
                .map_err(|why| ActionError::new(format!("`blocked_by`: {why}")))?;
            if let Some((said, run)) = found
                && run.as_deref() != Some(ctx.attempt.run_id.as_str())
            {
                return Err(ActionError::new(format!(
                    "not started: a restore is unfinished ({said}); the system may be half \
                     restored. Finish it (`ward resume {}`), or remove the marker once the \
                     system is known to be whole",
                    run.as_deref().unwrap_or("RUN_ID")
                )));
            }
        }
        let argv = service_command("start", p.unit.as_deref(), p.start.as_deref())?;
        run_checked(ctx, &argv)?;
        if let Some(m) = &p.wait_up {
            let mut problem = None;
            let waited = wait_until(ctx, p.timeout.std(), || match procs::up(m) {
                Ok(found) => (found.is_some(), ()),
                // A user that does not exist or an unreadable pid file
                // will not mend itself: stop waiting.
                Err(e) => {
                    problem = Some(e);
                    (true, ())
                }
            })?;
            if let Some(e) = problem {
                return Err(ActionError::new(format!("`wait_up`: {e}")));
            }
            if waited.is_err() {
                return Err(ActionError::new(format!(
                    "process `{}` is not running {} after `{}`",
                    m.describe(),
                    p.timeout,
                    argv.join(" ")
                )));
            }
        }
        if let Some(check) = &p.wait_cmd {
            let mut last = String::new();
            let ok = wait_until(ctx, p.timeout.std(), || {
                match ctx.run_program(check, &[], false) {
                    Ok(f) if f.status.success() => (true, ()),
                    Ok(f) => {
                        last = describe_status(&f.status);
                        (false, ())
                    }
                    Err(e) => {
                        last = e.to_string();
                        (false, ())
                    }
                }
            })?;
            if ok.is_err() {
                return Err(ActionError::new(format!(
                    "`{}` did not succeed within {} (last: {last})",
                    check.join(" "),
                    p.timeout
                )));
            }
        }
        Ok(ActionOutput {
            summary: Some("started".into()),
            ..ActionOutput::default()
        })
    }

    fn inspect(
        p: &ServiceStartParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check};
        let mut out = vec![inspect::service(p.unit.as_deref(), p.start.as_deref(), ctx)];
        if let Some(m) = &p.wait_up {
            out.push(match procs::up(m) {
                Ok(Some(_)) => Check::pass("wait_up", format!("{} is running now", m.describe())),
                Ok(None) => Check::pass("wait_up", format!("{} is not running now", m.describe())),
                Err(e) => Check::fail("wait_up", e.to_string()),
            });
        }
        if let Some(argv) = &p.wait_cmd {
            out.extend(inspect::command(argv, ctx));
        }
        out
    }

    fn describe(p: &ServiceStartParams) -> String {
        let mut s = match (&p.unit, &p.start) {
            (Some(u), _) => format!("systemctl start {u}"),
            (_, Some(argv)) => argv.join(" "),
            _ => String::new(),
        };
        if let Some(m) = &p.wait_up {
            s.push_str(&format!(
                "; wait up to {} for process {}",
                p.timeout,
                m.describe()
            ));
        }
        if let Some(argv) = &p.wait_cmd {
            s.push_str(&format!(
                "; wait up to {} for `{}` to succeed",
                p.timeout,
                argv.join(" ")
            ));
        }
        s
    }
}
