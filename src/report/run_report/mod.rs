//! `ward report` and `--report FILE`: one typed account of a recorded run,
//! built from the state alone ([`RunReport::build`]), and its three
//! renderings: Markdown (to read and to file), HTML (one self-contained
//! file with a timeline picture) and JSON.
//!
//! Nothing here reads the playbook file: a report of last month's run
//! says what was recorded then, even if the playbook changed since. The
//! step definitions come from the resume fingerprint each run records
//! (`plan::fingerprint`), which already has every secret value masked;
//! the variables were recorded masked, and are masked again here by name.

mod html;
mod json;
mod markdown;
mod svg;
mod text;

use std::collections::BTreeMap;
use std::path::Path;

use crate::report::runs::{ItemCounts, item_counts};
use crate::state::{
    AttemptOutcome, AttemptRecord, EventRecord, ItemRecord, ItemState, RunRecord, RunState,
    StepRecord, StepState,
};

pub use html::render as render_html;
pub use json::render as render_json;
pub use markdown::render as render_markdown;

/// The three forms a report is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Markdown (`.md`).
    Markdown,
    /// One self-contained HTML file (`.html`, `.htm`, `.xhtml`).
    Html,
    /// JSON (`.json`).
    Json,
}

impl ReportFormat {
    /// The format a file name asks for by its extension, if it names one.
    pub fn from_extension(path: &Path) -> Option<ReportFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(ReportFormat::Markdown),
            "html" | "htm" | "xhtml" => Some(ReportFormat::Html),
            "json" => Some(ReportFormat::Json),
            _ => None,
        }
    }

    /// The report of `report` in this format, as the bytes of a file.
    pub fn render(self, report: &RunReport) -> Result<String, serde_json::Error> {
        Ok(match self {
            ReportFormat::Markdown => render_markdown(report),
            ReportFormat::Html => render_html(report),
            ReportFormat::Json => {
                let mut text = serde_json::to_string_pretty(&render_json(report)?)?;
                text.push('\n');
                text
            }
        })
    }
}

/// The action name `service.stop` steps have (the start of the downtime).
const SERVICE_STOP: &str = "service.stop";
/// The action name `service.start` steps have (the end of the downtime).
const SERVICE_START: &str = "service.start";

/// Everything a report says about one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run as recorded.
    pub run: RunRecord,
    /// Its variables (`vars:` as resolved, then the `--var`s), secrets
    /// masked; why not, when the record cannot be read (the report says so).
    pub vars: Result<Vec<ShownVar>, String>,
    /// Each step, in playbook order (compensation-only steps that never
    /// ran are left out, as in `ward status`).
    pub steps: Vec<StepReport>,
    /// The run's events, in the order they were recorded.
    pub events: Vec<EventRecord>,
    /// The timeline picture's content.
    pub timeline: Timeline,
    /// When the report was made (Unix ms).
    pub generated_at: i64,
}

/// A variable as a report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownVar {
    /// Its name.
    pub name: String,
    /// Its value as JSON text (`********` for a secret).
    pub value: serde_json::Value,
    /// True when it was given with `--var`.
    pub overridden: bool,
}

/// One step with what its definition and its attempts recorded.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// The step as recorded.
    pub record: StepRecord,
    /// What it is, from its recorded definition.
    pub definition: StepDefinition,
    /// Its attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Its last attempt's own time, once the step ended (as `ward status`).
    pub duration_ms: Option<i64>,
    /// The last lines of its last attempt's output when that attempt did
    /// not succeed (control characters written out; empty when there was
    /// no output, or the log is gone).
    pub failure_tail: Vec<String>,
    /// A `for_each` step's items (`None` for other steps, and for a
    /// fan-out step whose items were never listed).
    pub items: Option<StepItems>,
}

/// What a report shows of a `for_each` step's items.
#[derive(Clone, Debug)]
pub struct StepItems {
    /// Counted by state, with the rate (as `ward status`).
    pub counts: ItemCounts,
    /// The failed items, in list order.
    pub failed: Vec<ItemRecord>,
    /// The items' timeline.
    pub strip: ItemStrip,
}

/// The most items drawn one bar each; a step with more is drawn as
/// [`ItemStrip::buckets`], so that 10,000 items make a picture of a few
/// kilobytes, not megabytes.
pub const MAX_ITEM_BARS: usize = 200;
/// The most lanes of item bars (items that ran at once); more are drawn as
/// buckets too, so the picture stays a strip.
pub const MAX_ITEM_LANES: usize = 24;
/// How many time buckets a strip of many items has.
pub const ITEM_BUCKETS: usize = 100;

/// A `for_each` step's items on a time axis of their own: from the first
/// item's start to the last one's end (items are many and short; on the
/// run's axis they would be a smudge).
#[derive(Clone, Debug, PartialEq)]
pub struct ItemStrip {
    /// Time 0 of the axis (Unix ms).
    pub origin: i64,
    /// The axis' end, ms after `origin` (at least 1).
    pub span_ms: i64,
    /// One bar per item that started, in lanes (at most
    /// [`MAX_ITEM_BARS`] items and [`MAX_ITEM_LANES`] lanes); else empty.
    pub bars: Vec<ItemBar>,
    /// How many lanes the bars need.
    pub lanes: usize,
    /// With more items: how many ended in each slice of the axis, by
    /// state; else empty.
    pub buckets: Vec<ItemBucket>,
}

/// One item on the strip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemBar {
    /// Its key.
    pub key: String,
    /// Start and end, ms after the strip's origin (a running item ends
    /// at the report's time, or the run's end).
    pub start_ms: i64,
    /// End.
    pub end_ms: i64,
    /// Its state.
    pub state: ItemState,
    /// Its lane, from 0 at the top.
    pub lane: usize,
}

/// The items that ended in one slice of the strip's axis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemBucket {
    /// The slice, ms after the strip's origin.
    pub start_ms: i64,
    /// Its end.
    pub end_ms: i64,
    /// Items that succeeded in it.
    pub succeeded: u64,
    /// Items that failed in it.
    pub failed: u64,
    /// Items stopped in it (pending again, for a resume).
    pub stopped: u64,
    /// Items still running (or whose end was not recorded): in the last
    /// slice.
    pub running: u64,
}

impl ItemStrip {
    fn build(items: &[ItemRecord], open_end: i64) -> Option<ItemStrip> {
        // Items that ran: a start, and an end (or still running).
        let ran: Vec<(&ItemRecord, i64, i64)> = items
            .iter()
            .filter_map(|it| {
                let start = it.started_at?;
                let end = match it.state {
                    ItemState::Running => open_end.max(start),
                    _ => it.finished_at?.max(start),
                };
                Some((it, start, end))
            })
            .collect();
        let origin = ran.iter().map(|r| r.1).min()?;
        let span_ms = ran.iter().map(|r| r.2 - origin).max().unwrap_or(0).max(1);
        let mut bars: Vec<ItemBar> = Vec::new();
        let mut lanes = 0;
        if ran.len() <= MAX_ITEM_BARS {
            bars = ran
                .iter()
                .map(|(it, start, end)| ItemBar {
                    key: it.key.clone(),
                    start_ms: start - origin,
                    end_ms: end - origin,
                    state: it.state,
                    lane: 0,
                })
                .collect();
            bars.sort_by_key(|b| (b.start_ms, b.end_ms));
            let spans: Vec<(i64, i64)> = bars.iter().map(|b| (b.start_ms, b.end_ms)).collect();
            let (chosen, n) = lanes_for(&spans);
            for (b, lane) in bars.iter_mut().zip(chosen) {
                b.lane = lane;
            }
            lanes = n;
            if lanes > MAX_ITEM_LANES {
                bars.clear();
                lanes = 0;
            }
        }
        let mut buckets = Vec::new();
        if bars.is_empty() {
            let n = ITEM_BUCKETS as i64;
            // Whole ms per slice, so slices meet exactly.
            let width = (span_ms + n - 1) / n;
            let slices = ((span_ms + width - 1) / width).max(1);
            buckets = (0..slices)
                .map(|k| ItemBucket {
                    start_ms: k * width,
                    end_ms: ((k + 1) * width).min(span_ms),
                    ..ItemBucket::default()
                })
                .collect();
            for (it, _, end) in &ran {
                let k = (((end - origin) / width) as usize).min(buckets.len() - 1);
                let b = &mut buckets[k];
                match it.state {
                    ItemState::Succeeded => b.succeeded += 1,
                    ItemState::Failed => b.failed += 1,
                    ItemState::Running => b.running += 1,
                    ItemState::Pending | ItemState::Skipped | ItemState::Paused => b.stopped += 1,
                }
            }
        }
        Some(ItemStrip {
            origin,
            span_ms,
            bars,
            lanes,
            buckets,
        })
    }
}

/// How many lines of a failed attempt's output a report shows.
const TAIL_LINES: usize = 10;

impl StepReport {
    /// Why the step is in its state, when that says more than its last
    /// attempt's message: as in `ward status`, a succeeded step that ran
    /// has none (its recorded reason is the action's summary).
    pub fn reason(&self) -> Option<&str> {
        let rec = &self.record;
        let shown = rec.state != StepState::Succeeded || rec.attempts == 0;
        let last = self.attempts.last().and_then(|a| a.message.as_deref());
        rec.reason.as_deref().filter(|r| shown && Some(*r) != last)
    }
}

/// What a step's recorded definition says it is (all `None` for a
/// definition in a version this ward cannot read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepDefinition {
    /// `name:`.
    pub name: Option<String>,
    /// The action's name (`rsync`, `service.stop`).
    pub action: Option<String>,
    /// What it does in one line: the action's summary, the `run:` line or
    /// the `cmd:` words.
    pub what: Option<String>,
}

impl StepDefinition {
    /// Reads a recorded definition (`plan::fingerprint`, version 1: a
    /// compact JSON object).
    fn read(definition: &str) -> StepDefinition {
        if crate::plan::fingerprint::recorded_version(definition) != Some(1) {
            return StepDefinition::default();
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(definition) else {
            return StepDefinition::default();
        };
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
        let cmd = v.get("cmd").and_then(|c| c.as_array()).map(|words| {
            words
                .iter()
                .map(|w| crate::shell::quote(w.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        });
        StepDefinition {
            name: text("name"),
            action: text("action"),
            // A literal `PGPASSWORD=...` written in a `run:` line is masked
            // as in the output (a secret variable's value is masked already).
            what: text("summary").or_else(|| text("run")).or(cmd).map(|w| {
                w.lines()
                    .map(mask_secret_words)
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
        }
    }
}

/// The timeline picture: one bar per attempt on a time axis from the run's
/// start, in lanes so that attempts that overlap sit side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// Time 0 of the axis: the run's start (Unix ms).
    pub origin: i64,
    /// The axis' end, ms after `origin` (at least 1).
    pub span_ms: i64,
    /// The bars, by start.
    pub bars: Vec<Bar>,
    /// How many lanes the bars need.
    pub lanes: usize,
    /// The services' downtime, if a `service.stop` step ran.
    pub downtime: Option<Downtime>,
    /// Where the run was taken over by a resume (ms after `origin`).
    pub resumes: Vec<i64>,
}

/// One attempt on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    /// The step.
    pub step_id: String,
    /// Its attempt number.
    pub attempt: u32,
    /// Start, ms after the origin.
    pub start_ms: i64,
    /// End, ms after the origin (for an attempt whose end was not
    /// recorded: the run's end, or the report's time for a live run).
    pub end_ms: i64,
    /// How it ended; `None`: its end was not recorded (yet).
    pub outcome: Option<AttemptOutcome>,
    /// Its lane, from 0 at the top.
    pub lane: usize,
}

/// The time the services were down: from the start of the first
/// `service.stop` step's first attempt to the end of the `service.start`
/// step that started after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downtime {
    /// Start, ms after the origin.
    pub start_ms: i64,
    /// End, ms after the origin: the `service.start` step's end, or the
    /// axis' end when none ended (`closed` false).
    pub end_ms: i64,
    /// The `service.stop` step.
    pub stop_step: String,
    /// The `service.start` step that ended it, if one ran.
    pub start_step: Option<String>,
    /// False when no `service.start` step ended after the stop: the
    /// services may still have been down when the run ended.
    pub closed: bool,
}

impl RunReport {
    /// Adds the items of the run's `for_each` steps (`Store::items`, in
    /// step order): their counts, failed items and timeline.
    pub fn with_items(mut self, items: Vec<ItemRecord>) -> RunReport {
        if items.is_empty() {
            return self;
        }
        let records: Vec<StepRecord> = self.steps.iter().map(|s| s.record.clone()).collect();
        let attempts: Vec<AttemptRecord> =
            self.steps.iter().flat_map(|s| s.attempts.clone()).collect();
        let mut counts = item_counts(&self.run, &records, &attempts, &items, self.generated_at);
        let live =
            self.run.state == RunState::Running && !super::recorded_running_but_gone(&self.run);
        let open_end = if live {
            self.generated_at
        } else {
            self.run.finished_at.unwrap_or(self.generated_at)
        };
        for s in &mut self.steps {
            let Some(c) = counts.remove(&s.record.id) else {
                continue;
            };
            // In list order (one pass per fan-out step; there are few).
            let mine: Vec<ItemRecord> = items
                .iter()
                .filter(|it| it.step_id == s.record.id)
                .cloned()
                .collect();
            s.items = Some(StepItems {
                counts: c,
                failed: mine
                    .iter()
                    .filter(|it| it.state == ItemState::Failed)
                    .cloned()
                    .collect(),
                strip: ItemStrip::build(&mine, open_end).unwrap_or(ItemStrip {
                    origin: 0,
                    span_ms: 1,
                    bars: Vec::new(),
                    lanes: 0,
                    buckets: Vec::new(),
                }),
            });
        }
        self
    }

    /// The report of a run from its records; `now` (Unix ms) is when it is
    /// made, which is also where a live run's unfinished attempts end.
    pub fn build(
        run: RunRecord,
        steps: Vec<StepRecord>,
        attempts: Vec<AttemptRecord>,
        events: Vec<EventRecord>,
        now: i64,
    ) -> RunReport {
        let vars = shown_vars(&run);
        let mut by_step: BTreeMap<&str, Vec<AttemptRecord>> = BTreeMap::new();
        for a in &attempts {
            by_step.entry(&a.step_id).or_default().push(a.clone());
        }
        let steps: Vec<StepReport> = steps
            .into_iter()
            .filter(|s| !s.compensation || s.attempts > 0)
            .map(|record| {
                let mut mine = by_step.remove(record.id.as_str()).unwrap_or_default();
                mine.sort_by_key(|a| a.attempt);
                let duration_ms = record
                    .finished_at
                    .and(mine.last())
                    .and_then(|a| Some(a.finished_at? - a.started_at))
                    .filter(|d| *d >= 0);
                let failure_tail = mine
                    .last()
                    .filter(|a| a.outcome.is_some_and(|o| o != AttemptOutcome::Succeeded))
                    .map(|a| super::log_tail(Path::new(&a.log_path), TAIL_LINES))
                    .unwrap_or_default()
                    .iter()
                    .map(|l| text::visible(&mask_secret_words(l)))
                    .collect();
                StepReport {
                    definition: StepDefinition::read(&record.definition),
                    record,
                    attempts: mine,
                    duration_ms,
                    failure_tail,
                    items: None,
                }
            })
            .collect();
        let timeline = Timeline::build(&run, &steps, &events, now);
        RunReport {
            run,
            vars,
            steps,
            events,
            timeline,
            generated_at: now,
        }
    }

    /// The run's duration, once it ended.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.run.finished_at? - self.run.started_at).filter(|d| *d >= 0)
    }

    /// The events for "Guards, confirmations and notes": every event but
    /// those that repeat the steps table (attempts started and ended, steps
    /// skipped), so kinds added by other parts of ward show up as they are.
    pub fn notes(&self) -> impl Iterator<Item = &EventRecord> {
        self.events.iter().filter(|e| !e.kind.is_step_progress())
    }

    /// A step's report by id.
    pub fn step(&self, id: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.record.id == id)
    }
}

/// A line of a step's output with the values of secret-named settings
/// masked: `DB_PASSWORD=x`, `api_token: x`, `"secret_key": "x"`, and the
/// password in a URL (`postgres://u:x@h`). The state holds no secret
/// values (they are recorded masked) so the report cannot look for them
/// as the validation's redactor does; what a step prints in the common
/// `name=value` shapes is caught here, by the same names that make a
/// variable secret (`template::is_secret_name`). The run's own secret
/// values are masked before the log is written (`process::Mask`); this
/// catches secrets that were not the run's values.
pub(crate) fn mask_secret_words(line: &str) -> String {
    let mask = crate::template::MASK;
    let b = line.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
    let ends = |c: u8| c.is_ascii_whitespace() || b"\"',;&)]}".contains(&c);
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        let mut value_at = None;
        if c == b'=' || c == b':' {
            // The key before the separator, past a closing quote.
            let mut k_end = i;
            if k_end > 0 && (b[k_end - 1] == b'"' || b[k_end - 1] == b'\'') {
                k_end -= 1;
            }
            let mut k_start = k_end;
            while k_start > 0 && word(b[k_start - 1]) {
                k_start -= 1;
            }
            let url = c == b':' && b.get(i + 1) == Some(&b'/') && b.get(i + 2) == Some(&b'/');
            if !url && k_start < k_end && crate::template::is_secret_name(&line[k_start..k_end]) {
                let mut v = i + 1;
                while v < b.len() && (b[v] == b' ' || b[v] == b'"' || b[v] == b'\'') {
                    v += 1;
                }
                value_at = Some(v);
            } else if url {
                // `scheme://user:password@host`: the password.
                let rest = &line[i + 3..];
                let auth_end = rest.find(['/', ' ', '"', '\'']).unwrap_or(rest.len());
                if let Some(at) = rest[..auth_end].rfind('@')
                    && let Some(colon) = rest[..at].find(':')
                {
                    let from = i + 3 + colon + 1;
                    let to = i + 3 + at;
                    if from < to {
                        out.push_str(&line[copied..from]);
                        out.push_str(mask);
                        copied = to;
                        i = to;
                        continue;
                    }
                }
            }
        }
        if let Some(v) = value_at {
            let mut end = v;
            while end < b.len() && !ends(b[end]) {
                end += 1;
            }
            if end > v && &line[v..end] != mask {
                out.push_str(&line[copied..v]);
                out.push_str(mask);
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&line[copied..]);
    out
}

/// The run's variables, secrets masked (again: the record has them masked
/// already, by name and by what they were made from).
fn shown_vars(run: &RunRecord) -> Result<Vec<ShownVar>, String> {
    let vars = run.vars.as_ref().map_err(|e| e.to_string())?;
    let overrides = run.overrides.as_ref().map_err(|e| e.to_string())?;
    let mask = |name: &str, v: &serde_json::Value| {
        if crate::template::is_secret_name(name) {
            serde_json::Value::String(crate::template::MASK.to_owned())
        } else {
            v.clone()
        }
    };
    let mut out: Vec<ShownVar> = vars
        .iter()
        .map(|(k, v)| ShownVar {
            name: k.clone(),
            value: mask(k, overrides.get(k).unwrap_or(v)),
            overridden: overrides.contains_key(k),
        })
        .collect();
    for (k, v) in overrides.iter().filter(|(k, _)| !vars.contains_key(*k)) {
        out.push(ShownVar {
            name: k.clone(),
            value: mask(k, v),
            overridden: true,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

impl Timeline {
    fn build(run: &RunRecord, steps: &[StepReport], events: &[EventRecord], now: i64) -> Timeline {
        let origin = run.started_at;
        // Where an attempt without a recorded end stops on the picture.
        let live = run.state == RunState::Running && !super::recorded_running_but_gone(run);
        // (A run whose ward is gone has no recorded end: its unfinished
        // attempts stop at the last recorded moment, not at today.)
        let open_end = if live {
            now
        } else {
            run.finished_at.unwrap_or(i64::MIN)
        };
        let known_end = steps
            .iter()
            .flat_map(|s| &s.attempts)
            .map(|a| a.finished_at.unwrap_or(a.started_at))
            .chain(run.finished_at)
            .chain(events.iter().map(|e| e.at))
            .max()
            .unwrap_or(origin);
        let open_end = open_end.max(known_end);
        let position: BTreeMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.record.id.as_str(), i))
            .collect();
        let mut bars: Vec<Bar> = steps
            .iter()
            .flat_map(|s| &s.attempts)
            .map(|a| {
                let start = (a.started_at - origin).max(0);
                let end = (a.finished_at.unwrap_or(open_end) - origin).max(start);
                Bar {
                    step_id: a.step_id.clone(),
                    attempt: a.attempt,
                    start_ms: start,
                    end_ms: end,
                    outcome: a.outcome,
                    lane: 0,
                }
            })
            .collect();
        bars.sort_by_key(|b| {
            (
                b.start_ms,
                position.get(b.step_id.as_str()).copied(),
                b.attempt,
            )
        });
        let lanes = assign_lanes(&mut bars);
        let span_ms = bars
            .iter()
            .map(|b| b.end_ms)
            .chain([open_end - origin])
            .max()
            .unwrap_or(0)
            .max(1);
        let downtime = downtime(steps, origin, span_ms);
        let resumes = events
            .iter()
            .filter(|e| e.kind == crate::state::EventKind::RunResumed)
            .map(|e| (e.at - origin).clamp(0, span_ms))
            .collect();
        Timeline {
            origin,
            span_ms,
            bars,
            lanes,
            downtime,
            resumes,
        }
    }
}

/// Greedy interval partitioning over bars sorted by start: each bar goes
/// into the first lane whose last bar has ended by its start, or a new
/// lane. That uses as few lanes as attempts ever overlap, and keeps a
/// chain of steps in one lane. Returns the number of lanes.
fn assign_lanes(bars: &mut [Bar]) -> usize {
    let spans: Vec<(i64, i64)> = bars.iter().map(|b| (b.start_ms, b.end_ms)).collect();
    let (chosen, n) = lanes_for(&spans);
    for (bar, lane) in bars.iter_mut().zip(chosen) {
        bar.lane = lane;
    }
    n
}

/// The lane of each `(start, end)` span (sorted by start), as
/// [`assign_lanes`] chooses them, and how many lanes there are.
fn lanes_for(spans: &[(i64, i64)]) -> (Vec<usize>, usize) {
    let mut lane_ends: Vec<i64> = Vec::new();
    let mut chosen = Vec::with_capacity(spans.len());
    for &(start, end) in spans {
        match lane_ends.iter().position(|e| *e <= start) {
            Some(lane) => {
                chosen.push(lane);
                lane_ends[lane] = end;
            }
            None => {
                chosen.push(lane_ends.len());
                lane_ends.push(end);
            }
        }
    }
    (chosen, lane_ends.len())
}

/// The downtime window: from the first attempt of the first `service.stop`
/// step that ran to the end of the first `service.start` step that started
/// at or after it (its last attempt's end); with no such step, or one that
/// has not ended, to the axis' end, marked open. No window without a
/// `service.stop` step that ran.
fn downtime(steps: &[StepReport], origin: i64, span_ms: i64) -> Option<Downtime> {
    let first_start = |s: &StepReport| s.attempts.iter().map(|a| a.started_at).min();
    let with_action = |name: &'static str| {
        steps
            .iter()
            .filter(move |s| s.definition.action.as_deref() == Some(name))
            .filter_map(move |s| Some((first_start(s)?, s)))
    };
    let (stop_at, stop) = with_action(SERVICE_STOP).min_by_key(|(at, _)| *at)?;
    let start = with_action(SERVICE_START)
        .filter(|(at, _)| *at >= stop_at)
        .min_by_key(|(at, _)| *at);
    let start_ms = (stop_at - origin).max(0);
    let ended = start.and_then(|(_, s)| {
        let last = s.attempts.last()?;
        Some((last.finished_at? - origin).max(start_ms))
    });
    Some(Downtime {
        start_ms,
        end_ms: ended.unwrap_or(span_ms),
        stop_step: stop.record.id.clone(),
        start_step: start.map(|(_, s)| s.record.id.clone()),
        closed: ended.is_some(),
    })
}

/// A step's state as a word and whether it is good, bad or neither (for
/// colours and emphasis).
fn state_class(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "ok",
        StepState::Failed | StepState::Interrupted => "bad",
        StepState::Compensated => "undone",
        StepState::Skipped | StepState::Pending => "none",
        StepState::Running => "running",
    }
}

/// An attempt's outcome as a class name of the picture and the tables.
fn outcome_class(outcome: Option<AttemptOutcome>) -> &'static str {
    match outcome {
        Some(AttemptOutcome::Succeeded) => "succeeded",
        Some(AttemptOutcome::Failed) => "failed",
        Some(AttemptOutcome::TimedOut) => "timed-out",
        Some(AttemptOutcome::Interrupted) => "interrupted",
        None => "unfinished",
    }
}

/// A run state as a class name.
fn run_class(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "ok",
        RunState::Failed | RunState::Crashed | RunState::Interrupted => "bad",
        RunState::Running => "running",
        RunState::Skipped | RunState::Missed => "none",
    }
}

#[cfg(test)]
mod tests;
