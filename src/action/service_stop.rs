//! `service.stop`: stop a service and wait until its processes are gone.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{argv_problem, name_like_option, proc_problems, refuse_option_like};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem, describe_status,
};
use crate::model::Duration;
use crate::procs;
use crate::procs::ProcMatchList;

/// Stops a service through systemctl or a given command, then waits until
/// every process `wait_gone` matches has exited (checked through /proc).
pub struct ServiceStop;

/// Parameters of `service.stop`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStopParams {
    /// systemd unit to stop with `systemctl stop` (give this or `stop`).
    pub unit: Option<String>,
    /// Command (argv) that stops the service, e.g. `[fo_scheduler, --kill]`.
    pub stop: Option<Vec<String>>,
    /// Processes that must all be gone before the step succeeds: names (as in /proc/PID/comm or argv[0]) and/or matchers (`{name, cmdline, user, pidfile}`) that pick one instance's processes.
    #[serde(default)]
    pub wait_gone: ProcMatchList,
    /// How long to wait for the processes to go (default 60s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

impl Action for ServiceStop {
    const NAME: &'static str = "service.stop";
    const SUMMARY: &'static str = "stop a service and wait until its processes are gone";
    type Params = ServiceStopParams;

    fn check(p: &ServiceStopParams) -> Vec<ParamProblem> {
        let mut out = Vec::new();
        match (&p.unit, &p.stop) {
            (None, None) => out.push(
                ParamProblem::new(
                    "",
                    "`service.stop` needs `unit` (systemd) or `stop` (a command)",
                )
                .help("e.g. `unit: fossology` or `stop: [fo_scheduler, --kill]`"),
            ),
            (Some(_), Some(_)) => out.push(ParamProblem::new(
                "stop",
                "give either `unit` or `stop`, not both",
            )),
            (_, Some(argv)) => out.extend(argv_problem("stop", argv)),
            (Some(unit), None) => out.extend(name_like_option("unit", unit)),
        }
        out.extend(proc_problems(
            "wait_gone",
            procs::list_problems("wait_gone", &p.wait_gone),
        ));
        out
    }

    fn perform(p: &ServiceStopParams, ctx: &ActionCtx) -> ActionResult {
        let argv = service_command("stop", p.unit.as_deref(), p.stop.as_deref())?;
        // Before the stop: a pid file's tree must be known while its root
        // still runs, since agents are reparented once the scheduler exits.
        let mut watch = procs::GoneWatch::record(&p.wait_gone)
            .map_err(|e| ActionError::new(format!("`wait_gone`: {e}")))?;
        for note in &watch.notes {
            ctx.log(note.clone());
        }
        run_checked(ctx, &argv)?;
        let left = wait_gone(ctx, p.timeout.std(), &mut watch)?;
        match left {
            Ok(()) => Ok(ActionOutput {
                summary: Some(if p.wait_gone.0.is_empty() {
                    "stopped".into()
                } else {
                    format!(
                        "stopped; none of {} is running",
                        procs::describe_list(&p.wait_gone)
                    )
                }),
                ..ActionOutput::default()
            }),
            Err(still) => Err(ActionError::new(format!(
                "still running after {}: {}",
                p.timeout,
                procs::describe(&still)
            ))),
        }
    }

    fn inspect(
        p: &ServiceStopParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check};
        let mut out = vec![inspect::service(p.unit.as_deref(), p.stop.as_deref(), ctx)];
        if !p.wait_gone.0.is_empty() {
            // Read from /proc (and pid files) only, as the step does before its stop.
            out.push(match procs::GoneWatch::record(&p.wait_gone) {
                Ok(mut watch) => {
                    let found = watch.still();
                    Check::pass(
                        "wait_gone",
                        if found.is_empty() {
                            "none running now".to_owned()
                        } else {
                            format!(
                                "running now (the step stops them): {}",
                                procs::describe(&found)
                            )
                        },
                    )
                }
                Err(e) => Check::fail("wait_gone", e.to_string()),
            });
        }
        out
    }

    fn describe(p: &ServiceStopParams) -> String {
        let how = match (&p.unit, &p.stop) {
            (Some(u), _) => format!("systemctl stop {u}"),
            (_, Some(argv)) => argv.join(" "),
            _ => String::new(),
        };
        if p.wait_gone.0.is_empty() {
            how
        } else {
            format!(
                "{how}; wait up to {} until gone: {}",
                p.timeout,
                procs::describe_list(&p.wait_gone)
            )
        }
    }
}

/// Waits until none of `watch`'s processes runs, or `limit` passes (then
/// returns those still running). The scheduler's downtime starts with this
/// wait, so the end of the last agent is noticed within ~10 ms: between
/// full looks at every process (every 100 ms, which also catch processes
/// that appeared since), only the pids last seen are checked.
fn wait_gone(
    ctx: &ActionCtx,
    limit: std::time::Duration,
    watch: &mut procs::GoneWatch,
) -> Result<Result<(), Vec<procs::Found>>, ActionError> {
    let step = std::time::Duration::from_millis(10);
    let full_look = std::time::Duration::from_millis(100);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let still = watch.still();
        if still.is_empty() {
            return Ok(Ok(()));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(Err(still));
        }
        let next_look = (std::time::Instant::now() + full_look).min(deadline);
        while std::time::Instant::now() < next_look && procs::any_running(&still) {
            ctx.check()?;
            std::thread::sleep(step);
        }
        ctx.check()?;
    }
}

/// Polls `check` every 100 ms until it says done or `limit` passes. Returns
/// Ok(Ok(())) when done, Ok(Err(last value)) on timeout, Err if cancelled.
pub(super) fn wait_until<T>(
    ctx: &ActionCtx,
    limit: std::time::Duration,
    mut check: impl FnMut() -> (bool, T),
) -> Result<Result<(), T>, ActionError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (done, value) = check();
        if done {
            return Ok(Ok(()));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(Err(value));
        }
        ctx.check()?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `systemctl VERB -- UNIT`, or the given command.
pub(super) fn service_command(
    verb: &str,
    unit: Option<&str>,
    command: Option<&[String]>,
) -> Result<Vec<String>, ActionError> {
    match (unit, command) {
        // `--`: the unit is a name, never an option (`-H host` would act on
        // another machine); validation refuses a leading `-` as well.
        (Some(unit), _) => {
            refuse_option_like("unit", unit)?;
            Ok(vec![
                "systemctl".to_owned(),
                verb.to_owned(),
                "--".to_owned(),
                unit.to_owned(),
            ])
        }
        (_, Some(argv)) => Ok(argv.to_vec()),
        _ => Err(ActionError::new(format!(
            "no `unit` and no `{verb}` command"
        ))),
    }
}

/// Runs a command (logged), failing the step unless it exits 0.
pub(super) fn run_checked(ctx: &ActionCtx, argv: &[String]) -> Result<(), ActionError> {
    ctx.log(format!("running: {}", argv.join(" ")));
    let done = ctx.run_program(argv, &[], false)?;
    if done.status.success() {
        Ok(())
    } else {
        Err(ActionError::new(format!(
            "`{}` failed ({})",
            argv.join(" "),
            describe_status(&done.status)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::service_command;

    #[test]
    fn systemctl_gets_the_unit_after_double_dash() {
        assert_eq!(
            service_command("stop", Some("fossology"), None).expect("argv"),
            ["systemctl", "stop", "--", "fossology"]
        );
        assert!(service_command("stop", Some("-Hevil"), None).is_err());
    }
}
