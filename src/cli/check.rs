//! `ward check [PLAYBOOK...]`: is each playbook's last successful run
//! younger than its `max_age`? For a cron line of its own or a monitoring
//! agent: exit 7 names each playbook that is stale or never succeeded.
//!
//! Works from the state alone: every run records its playbook's `max_age`,
//! so with no PLAYBOOK every playbook whose most recent run recorded one is
//! checked. A PLAYBOOK is a playbook's `name:`, or its file (whose
//! `max_age` then counts, also before its first run).

use std::io::Write;
use std::path::Path;

use chrono::TimeZone;
use serde_json::json;

use super::CheckArgs;
use crate::diagnostic::Diagnostics;
use crate::error::{WardError, exit};
use crate::model::Duration;
use crate::report::{Style, json_time, local_time};
use crate::session::{StateSession, block_on};
use crate::state::{Access, Store};

/// What `check` found for one playbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freshness {
    /// Its last success is at most `max_age` old.
    Fresh,
    /// Its last success is older than `max_age`.
    Stale,
    /// It never succeeded (or has no run recorded at all).
    Never,
    /// Its last success started after "now": the clock was wrong then or
    /// is now (or `WARD_NOW` is in the past). Its age cannot be told.
    Future,
}

impl Freshness {
    fn word(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::Never => "never",
            Freshness::Future => "future",
        }
    }
}

/// One line of the report.
struct Verdict {
    playbook: String,
    max_age_ms: i64,
    freshness: Freshness,
    /// The last successful run: its id and when it (first) started (Unix
    /// ms): what the backup holds is from then, even if it was resumed.
    last: Option<(String, i64)>,
    age_ms: Option<i64>,
}

/// A playbook asked for on the command line: its name and, from its
/// file, its `max_age`.
struct Wanted {
    name: String,
    max_age_ms: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.std().as_millis()).unwrap_or(i64::MAX)
}

/// A PLAYBOOK argument: a file if one is there (or it looks like a path),
/// else a playbook name.
fn wanted(arg: &str) -> Result<Wanted, WardError> {
    let path = Path::new(arg);
    let looks_like_file =
        path.is_file() || arg.contains('/') || arg.ends_with(".yml") || arg.ends_with(".yaml");
    if !looks_like_file {
        return Ok(Wanted {
            name: arg.to_owned(),
            max_age_ms: None,
        });
    }
    let source = crate::parse::read_source(path)?;
    let mut diags = Diagnostics::default();
    let playbook = crate::parse::parse(source, &mut diags)
        .filter(|p| !p.name.value.is_empty())
        .ok_or_else(|| {
            WardError::Usage(format!(
                "{arg}: no playbook name could be read from it; `ward validate {arg}` says why"
            ))
        })?;
    if playbook.max_age.is_none()
        && let Some(bad) = diags
            .into_sorted()
            .into_iter()
            .find(|d| d.is_error() && d.message.contains("max_age"))
    {
        return Err(WardError::Usage(format!("{arg}: {}", bad.message)));
    }
    Ok(Wanted {
        name: playbook.name.value,
        max_age_ms: playbook.max_age.map(|d| ms(d.value)),
    })
}

/// "now" in Unix ms, honouring `WARD_NOW` (local time).
fn now_ms() -> Result<i64, WardError> {
    let now = crate::clock::now().map_err(|e| WardError::Usage(e.to_string()))?;
    chrono::Local
        .from_local_datetime(&now)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| WardError::Usage(format!("{now} does not exist in the local time zone")))
}

async fn verdict(
    store: &dyn Store,
    name: &str,
    max_age_ms: i64,
    now: i64,
) -> Result<Verdict, WardError> {
    let last = store
        .last_succeeded(name)
        .await?
        .map(|r| (r.id, r.started_at));
    let age_ms = last.as_ref().map(|(_, at)| now - at);
    let freshness = match age_ms {
        None => Freshness::Never,
        Some(age) if age < 0 => Freshness::Future,
        Some(age) if age > max_age_ms => Freshness::Stale,
        Some(_) => Freshness::Fresh,
    };
    Ok(Verdict {
        playbook: name.to_owned(),
        max_age_ms,
        freshness,
        last,
        age_ms,
    })
}

/// The `max_age` the newest run of `name` recorded.
async fn recorded_max_age(store: &dyn Store, name: &str) -> Result<Option<i64>, WardError> {
    Ok(store
        .runs(Some(name), 1)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.max_age_ms))
}

pub(super) fn check(args: &CheckArgs) -> Result<i32, WardError> {
    let wanted: Vec<Wanted> = args
        .playbooks
        .iter()
        .map(|a| wanted(a))
        .collect::<Result<_, _>>()?;
    let now = now_ms()?;
    let verdicts = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let store = session.store.as_ref();
        let mut out = Vec::new();
        if wanted.is_empty() {
            for name in store.playbook_names().await? {
                if let Some(max_age) = recorded_max_age(store, &name).await? {
                    out.push(verdict(store, &name, max_age, now).await?);
                }
            }
        }
        for w in &wanted {
            let max_age = match w.max_age_ms {
                Some(m) => m,
                None => match recorded_max_age(store, &w.name).await? {
                    Some(m) => m,
                    None if store.runs(Some(&w.name), 1).await?.is_empty() => {
                        return Err(WardError::Usage(format!(
                            "no run of playbook `{}` is recorded in {}: give its file to `ward \
                             check` (its `max_age` then counts), or check the name and `--state`",
                            w.name,
                            store.describe()
                        )));
                    }
                    None => {
                        return Err(WardError::Usage(format!(
                            "playbook `{}` has no `max_age` recorded in {}: add `max_age:` to it \
                             (e.g. `max_age: 26h`) and run it once, or give its file to `ward check`",
                            w.name,
                            store.describe()
                        )));
                    }
                },
            };
            out.push(verdict(store, &w.name, max_age, now).await?);
        }
        Ok::<_, WardError>(out)
    })??;
    let bad = verdicts.iter().any(|v| v.freshness != Freshness::Fresh);
    if args.json {
        print_json(&verdicts, bad)?;
    } else {
        print_human(&verdicts)?;
    }
    Ok(if bad { exit::STALE } else { exit::OK })
}

fn age_text(ms: i64) -> String {
    // Whole seconds: the milliseconds of an age say nothing.
    Duration(std::time::Duration::from_secs((ms / 1000).max(0) as u64)).to_string()
}

fn print_human(verdicts: &[Verdict]) -> Result<(), WardError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let style = Style::stdout();
    if verdicts.is_empty() {
        writeln!(
            out,
            "no playbook to check: no recorded run has a `max_age` (add `max_age: 26h` to a playbook)"
        )?;
    }
    let width = verdicts.iter().map(|v| v.playbook.len()).max().unwrap_or(0);
    let words = verdicts
        .iter()
        .map(|v| v.freshness.word().len())
        .max()
        .unwrap_or(0)
        .max(5);
    for v in verdicts {
        let word = format!("{:<words$}", v.freshness.word());
        let word = if v.freshness == Freshness::Fresh {
            style.bold(&word)
        } else {
            style.error(&word)
        };
        let max_age = age_text(v.max_age_ms);
        let tail = match (&v.last, v.age_ms) {
            (Some((run, at)), Some(_)) if v.freshness == Freshness::Future => format!(
                "last success started {} (run {run}), which is after now: the clock was wrong \
                 then or is now (or WARD_NOW is in the past); its age cannot be told, max_age {max_age}",
                local_time(*at)
            ),
            (Some((run, at)), Some(age)) => format!(
                "age {}, last success {} (run {run}), max_age {max_age}",
                age_text(age),
                local_time(*at)
            ),
            _ => format!("no successful run recorded, max_age {max_age}"),
        };
        writeln!(out, "{word}  {:<width$}  {tail}", v.playbook)?;
    }
    out.flush()?;
    Ok(())
}

fn print_json(verdicts: &[Verdict], bad: bool) -> Result<(), WardError> {
    let list: Vec<serde_json::Value> = verdicts
        .iter()
        .map(|v| {
            json!({
                "playbook": v.playbook,
                "status": v.freshness.word(),
                "max_age": age_text(v.max_age_ms),
                "max_age_ms": v.max_age_ms,
                "age_ms": v.age_ms.filter(|a| *a >= 0),
                "last_success_run": v.last.as_ref().map(|(id, _)| id),
                "last_success": json_time(v.last.as_ref().map(|(_, at)| *at)),
            })
        })
        .collect();
    let doc = json!({ "ok": !bad, "playbooks": list });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
