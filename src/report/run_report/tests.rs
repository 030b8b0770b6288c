//! The report built from records made by hand: lanes, the downtime
//! window, events of kinds this ward does not know, escaping, and that the
//! HTML and its SVG are well-formed XML.

use std::collections::BTreeMap;

use super::*;
use crate::state::{EventKind, PreconditionsRecord, RecordedFacts};

const T0: i64 = 1_796_000_000_000;

fn run(state: RunState) -> RunRecord {
    let mut vars = BTreeMap::new();
    vars.insert("dest".to_owned(), serde_json::json!("/backup"));
    vars.insert("db_password".to_owned(), serde_json::json!("hunter2"));
    let mut overrides = BTreeMap::new();
    overrides.insert("dest".to_owned(), serde_json::json!("/other"));
    RunRecord {
        id: "20261202-0400-abcd".into(),
        playbook_name: "nightly <&>".into(),
        playbook_path: "/etc/ward/nightly.yml".into(),
        playbook_hash: "h".into(),
        playbook_text: String::new(),
        lock_name: "nightly".into(),
        vars: Ok(vars),
        overrides: Ok(overrides),
        facts: Ok(RecordedFacts {
            date: String::new(),
            time: String::new(),
            timestamp: String::new(),
            weekday: String::new(),
            host: String::new(),
            run_id: String::new(),
            playbook_dir: String::new(),
        }),
        state,
        host: "backup1".into(),
        pid: 1,
        ward_version: "0.1.0".into(),
        started_at: T0,
        finished_at: Some(T0 + 10_000),
        resumes: 0,
        message: None,
        max_age_ms: None,
        preconditions: Some(PreconditionsRecord {
            skipped_by_operator: false,
            checks: vec![crate::state::CheckRecord {
                check: "free /backup >= 1G".into(),
                passed: true,
                detail: "12G free".into(),
            }],
            log_path: None,
        }),
        slot_at: None,
    }
}

fn step(id: &str, position: usize, action: Option<&str>, state: StepState) -> StepRecord {
    let definition = match action {
        Some(a) => format!(
            r#"{{"id":"{id}","layer":null,"kind":"action","action":"{a}","summary":"do {id}","needs":[]}}"#
        ),
        None => {
            format!(r#"{{"id":"{id}","layer":null,"kind":"run","run":"echo {id}","needs":[]}}"#)
        }
    };
    StepRecord {
        id: id.into(),
        position,
        definition,
        state,
        reason: None,
        attempts: 1,
        exit_code: Some(0),
        started_at: Some(T0),
        finished_at: Some(T0 + 1),
        log_path: None,
        compensation: false,
        unflushed: None,
    }
}

fn attempt(step: &str, n: u32, from: i64, to: i64, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        step_id: step.into(),
        attempt: n,
        started_at: T0 + from,
        finished_at: Some(T0 + to),
        exit_code: Some(if outcome == AttemptOutcome::Succeeded {
            0
        } else {
            3
        }),
        signal: None,
        outcome: Some(outcome),
        message: None,
        log_path: format!("/logs/{step}.{n}.log"),
        details: None,
    }
}

fn event(seq: i64, at: i64, kind: &str, message: &str) -> EventRecord {
    EventRecord {
        seq,
        at: T0 + at,
        step_id: None,
        kind: EventKind::parse(kind),
        message: Some(message.into()),
    }
}

/// stop (0-1s) -> a and b at once (1-4s, 1-3s) -> start (4-5s), then
/// c fails (5-6s).
fn sample() -> RunReport {
    use AttemptOutcome::*;
    let steps = vec![
        step("stop", 0, Some("service.stop"), StepState::Succeeded),
        step("a", 1, None, StepState::Succeeded),
        step("b", 2, Some("rsync"), StepState::Succeeded),
        step("start", 3, Some("service.start"), StepState::Succeeded),
        step("c", 4, None, StepState::Failed),
        step("never", 5, None, StepState::Skipped),
    ];
    let mut b = attempt("b", 1, 1_000, 3_000, Succeeded);
    b.details = Some(serde_json::json!({"files": 12, "snapshot": "/b/2026-12-02"}));
    let mut c = attempt("c", 1, 5_000, 6_000, Failed);
    c.message = Some("exit 3: </td><script>alert(1)</script> \u{1b}[31m".into());
    let attempts = vec![
        attempt("stop", 1, 0, 1_000, Succeeded),
        attempt("a", 1, 1_000, 4_000, Succeeded),
        b,
        attempt("start", 1, 4_000, 5_000, Succeeded),
        c,
    ];
    let events = vec![
        event(1, 0, "run-started", "pid 1 on backup1"),
        event(2, 0, "attempt-started", "attempt 1"),
        event(3, 100, "confirmed", "confirmed by alice with --yes"),
        event(
            4,
            200,
            "guard-overridden",
            "free space guard: <override> & \"why\"",
        ),
        event(5, 10_000, "run-failed", "step c failed"),
    ];
    RunReport::build(run(RunState::Failed), steps, attempts, events, T0 + 20_000)
}

#[test]
fn attempts_that_overlap_get_lanes_of_their_own_and_a_chain_keeps_one() {
    let r = sample();
    let t = &r.timeline;
    let lane = |id: &str| t.bars.iter().find(|b| b.step_id == id).expect(id).lane;
    assert_eq!(t.lanes, 2);
    assert_ne!(lane("a"), lane("b"));
    assert_eq!(lane("stop"), lane("a"));
    assert_eq!(lane("start"), lane("a"));
    assert_eq!(t.span_ms, 10_000);
    // No two bars in one lane overlap.
    for x in &t.bars {
        for y in &t.bars {
            if x != y && x.lane == y.lane {
                assert!(
                    x.end_ms <= y.start_ms || y.end_ms <= x.start_ms,
                    "{x:?} {y:?}"
                );
            }
        }
    }
}

#[test]
fn the_downtime_runs_from_the_stop_to_the_end_of_the_start_that_follows() {
    let r = sample();
    let d = r.timeline.downtime.as_ref().expect("a window");
    assert_eq!((d.start_ms, d.end_ms, d.closed), (0, 5_000, true));
    assert_eq!(d.stop_step, "stop");
    assert_eq!(d.start_step.as_deref(), Some("start"));
}

#[test]
fn a_stop_without_a_start_after_it_is_open_to_the_end_and_no_stop_no_window() {
    use AttemptOutcome::*;
    let steps = vec![
        step("start", 0, Some("service.start"), StepState::Succeeded),
        step("stop", 1, Some("service.stop"), StepState::Succeeded),
        step("work", 2, None, StepState::Failed),
    ];
    let attempts = vec![
        attempt("start", 1, 0, 500, Succeeded),
        attempt("stop", 1, 500, 1_000, Succeeded),
        attempt("work", 1, 1_000, 2_000, Failed),
    ];
    let r = RunReport::build(run(RunState::Failed), steps, attempts, vec![], T0);
    let d = r.timeline.downtime.expect("a window");
    assert_eq!((d.start_ms, d.end_ms, d.closed), (500, 10_000, false));
    let steps = vec![step("a", 0, None, StepState::Succeeded)];
    let attempts = vec![attempt("a", 1, 0, 500, Succeeded)];
    let r = RunReport::build(run(RunState::Succeeded), steps, attempts, vec![], T0);
    assert_eq!(r.timeline.downtime, None);
}

#[test]
fn an_attempt_whose_end_was_not_recorded_ends_at_the_last_recorded_moment() {
    let mut r = run(RunState::Crashed);
    r.finished_at = None;
    let steps = vec![
        step("a", 0, None, StepState::Succeeded),
        step("b", 1, None, StepState::Running),
    ];
    let mut b = attempt("b", 1, 1_000, 0, AttemptOutcome::Failed);
    (b.finished_at, b.outcome, b.exit_code) = (None, None, None);
    let attempts = vec![attempt("a", 1, 0, 1_000, AttemptOutcome::Succeeded), b];
    let events = vec![event(1, 2_500, "orphans-stopped", "stopped 1 process")];
    // Made a day later: the picture still ends where the records do.
    let report = RunReport::build(r, steps, attempts, events, T0 + 86_400_000);
    let t = &report.timeline;
    assert_eq!(t.span_ms, 2_500);
    let bar = t.bars.iter().find(|x| x.step_id == "b").expect("b");
    assert_eq!((bar.end_ms, bar.outcome), (2_500, None));
    assert!(render_markdown(&report).contains("- attempt 1: end not recorded at +1.0s"));
}

#[test]
fn secrets_stay_masked_and_overrides_win() {
    let r = sample();
    let vars = r.vars.as_ref().expect("vars");
    let get = |n: &str| vars.iter().find(|v| v.name == n).expect(n);
    assert_eq!(get("db_password").value, serde_json::json!("********"));
    assert_eq!(get("dest").value, serde_json::json!("/other"));
    assert!(get("dest").overridden);
    for text in [
        render_markdown(&r),
        render_html(&r),
        render_json(&r).expect("json").to_string(),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[test]
fn every_event_but_step_progress_is_a_note_whatever_its_kind() {
    let r = sample();
    let kinds: Vec<String> = r.notes().map(|e| e.kind.as_text().into_owned()).collect();
    assert_eq!(
        kinds,
        ["run-started", "confirmed", "guard-overridden", "run-failed"]
    );
    let md = render_markdown(&r);
    assert!(md.contains("## Guards, confirmations and notes"), "{md}");
    assert!(md.contains("confirmed by alice with --yes"), "{md}");
    assert!(
        md.contains("free space guard: \\<override\\> \\& \"why\""),
        "{md}"
    );
}

#[test]
fn markdown_has_every_step_its_state_and_the_details() {
    let md = render_markdown(&sample());
    for line in [
        "| `stop` | succeeded | 1 | 0 | 1.0s | `service.stop`: do stop |",
        "| `c` | **failed** | 1 | 0 | 1.0s | echo c |",
        "  - snapshot: /b/2026-12-02",
        "Downtime: +0ms to +5.0s (5.0s), from the start of `stop` to the end of `start`.",
    ] {
        assert!(md.contains(line), "no {line:?} in\n{md}");
    }
    // A control character from a step's output is written out.
    assert!(!md.contains('\u{1b}'), "{md}");
    assert!(md.contains("\\\\u{1b}"), "{md}");
}

/// Every element of an XML document, as (name, attributes), failing on
/// anything that is not well-formed: unclosed or mismatched elements,
/// references other than XML's five and character references, control
/// characters XML does not allow.
pub(crate) fn xml_elements(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    use quick_xml::events::Event;
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        "a control character XML does not allow:\n{text}"
    );
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    let mut depth = 0i32;
    loop {
        let event = reader.read_event().unwrap_or_else(|e| {
            panic!(
                "not well-formed at {}: {e}\n{text}",
                reader.buffer_position()
            )
        });
        match event {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.name().into_inner().to_owned();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("attribute");
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .expect("attribute value")
                            .into_owned();
                        (a.key.into_inner().to_owned(), v)
                    })
                    .collect();
                out.push((name, attrs));
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::GeneralRef(r) => {
                let name = r.to_string();
                assert!(
                    ["amp", "lt", "gt", "quot", "apos"].contains(&name.as_str()) || r.is_char_ref(),
                    "a reference XML does not define: &{name};"
                );
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "elements left open:\n{text}");
    out
}

#[test]
fn the_html_and_its_svg_are_well_formed_xml_with_nothing_injected() {
    let r = sample();
    let html = render_html(&r);
    let elements = xml_elements(&html);
    let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "html");
    assert!(!names.contains(&"script"), "{html}");
    assert_eq!(names.iter().filter(|n| **n == "svg").count(), 1);
    let bars: Vec<_> = elements
        .iter()
        .filter(|(n, a)| n == "rect" && a.get("class").is_some_and(|c| c.starts_with("bar ")))
        .collect();
    assert_eq!(bars.len(), 5);
    let failed = bars
        .iter()
        .find(|(_, a)| a["data-step"] == "c")
        .expect("bar of c");
    assert_eq!(failed.1["class"], "bar failed");
    let window = elements
        .iter()
        .find(|(n, a)| n == "rect" && a.get("class").map(String::as_str) == Some("downtime"))
        .expect("downtime rect");
    assert_eq!(window.1["data-start-ms"], "0");
    assert_eq!(window.1["data-end-ms"], "5000");
    // Nothing to load from elsewhere.
    assert!(
        !html.contains("http://") || html.matches("http://").count() == 2,
        "{html}"
    );
    assert!(!html.contains("https://"), "{html}");
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;"), "{html}");
}

#[test]
fn json_has_the_steps_events_and_timeline() {
    let v = render_json(&sample()).expect("json");
    assert_eq!(v["state"], "failed");
    assert_eq!(v["steps"][1]["id"], "a");
    assert_eq!(v["steps"][2]["action"], "rsync");
    assert_eq!(v["steps"][4]["attempt_list"][0]["outcome"], "failed");
    assert_eq!(v["events"][2]["kind"], "confirmed");
    assert_eq!(v["timeline"]["lanes"], 2);
    assert_eq!(v["timeline"]["downtime"]["end_ms"], 5000);
    assert!(v["generated_at"].is_string());
}

#[test]
fn secret_settings_printed_by_a_step_are_masked_in_the_output_tail() {
    use super::mask_secret_words as m;
    assert_eq!(m("PGPASSWORD=hunter2 psql"), "PGPASSWORD=******** psql");
    assert_eq!(m("api_token: abc.def, next"), "api_token: ********, next");
    assert_eq!(
        m(r#"{"secret_key": "s3cr3t", "user": "bob"}"#),
        r#"{"secret_key": "********", "user": "bob"}"#
    );
    assert_eq!(
        m("connecting to postgres://app:pw1@db:5432/app"),
        "connecting to postgres://app:********@db:5432/app"
    );
    assert_eq!(
        m("user=bob host=db port=5432"),
        "user=bob host=db port=5432"
    );
    assert_eq!(m("ERROR: no such table"), "ERROR: no such table");
    assert_eq!(m("password=********"), "password=********");
    assert_eq!(m("token=\u{e9}t\u{e9} x"), "token=******** x");
}

#[test]
fn bidirectional_controls_are_written_out_in_every_rendering() {
    let mut r = sample();
    r.steps[0].definition.name = Some("evil\u{202e}dedeecus".into());
    let html = render_html(&r);
    let md = crate::report::run_report::render_markdown(&r);
    for text in [&html, &md] {
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(text.contains("\\u{202e}"), "{text}");
    }
}

fn item(key: &str, position: usize, state: ItemState, at: Option<(i64, i64)>) -> ItemRecord {
    ItemRecord {
        step_id: "each".into(),
        key: key.into(),
        position,
        item: serde_json::json!(key),
        state,
        attempts: u32::from(at.is_some()),
        exit_code: (state == ItemState::Failed).then_some(2),
        message: None,
        started_at: at.map(|a| T0 + a.0),
        finished_at: at.filter(|_| state != ItemState::Running).map(|a| T0 + a.1),
        log_path: None,
        worker: None,
    }
}

#[test]
fn a_few_items_are_bars_in_lanes_and_a_running_one_ends_at_the_runs_end() {
    let items = vec![
        item("a", 0, ItemState::Succeeded, Some((1_000, 2_000))),
        item("b", 1, ItemState::Failed, Some((1_000, 3_000))),
        item("c", 2, ItemState::Running, Some((2_000, 0))),
        item("d", 3, ItemState::Pending, None),
    ];
    // The run ended at T0 + 10 s with `c` not recorded as ended.
    let strip = ItemStrip::build(&items, T0 + 10_000).expect("items ran");
    assert_eq!(
        (strip.origin, strip.span_ms, strip.lanes),
        (T0 + 1_000, 9_000, 2)
    );
    let shown: Vec<(&str, i64, i64, usize)> = strip
        .bars
        .iter()
        .map(|b| (b.key.as_str(), b.start_ms, b.end_ms, b.lane))
        .collect();
    // `c` starts when `a` ends: the same lane.
    assert_eq!(
        shown,
        [
            ("a", 0, 1_000, 0),
            ("b", 0, 2_000, 1),
            ("c", 1_000, 9_000, 0)
        ]
    );
    assert!(strip.buckets.is_empty());
    assert!(ItemStrip::build(&items[3..], T0).is_none(), "nothing ran");
}

#[test]
fn many_items_are_counted_into_buckets_by_their_end() {
    let items: Vec<ItemRecord> = (0..1_000)
        .map(|k| {
            let state = if k % 10 == 0 {
                ItemState::Failed
            } else {
                ItemState::Succeeded
            };
            let start = k as i64 * 10;
            item(&format!("k{k}"), k, state, Some((start, start + 5)))
        })
        .collect();
    let strip = ItemStrip::build(&items, T0).expect("items ran");
    assert!(strip.bars.is_empty());
    assert_eq!(strip.buckets.len(), ITEM_BUCKETS);
    assert_eq!(strip.buckets.last().unwrap().end_ms, strip.span_ms);
    let failed: u64 = strip.buckets.iter().map(|b| b.failed).sum();
    let succeeded: u64 = strip.buckets.iter().map(|b| b.succeeded).sum();
    assert_eq!((succeeded, failed), (900, 100));
    // About 10 s over 100 buckets of 100 ms: ten items end in each.
    assert!(strip.buckets.iter().all(|b| b.succeeded + b.failed == 10));
    let svg = super::svg::render_items("each", &strip);
    assert!(svg.len() < 40_000, "{} bytes", svg.len());
}

#[test]
fn item_counts_measure_the_rate_over_the_last_attempt_and_only_its_items() {
    let r = run(RunState::Failed);
    let mut s = step("each", 0, None, StepState::Failed);
    s.finished_at = Some(T0 + 5_000);
    let a = attempt("each", 1, 1_000, 5_000, AttemptOutcome::Failed);
    let items = vec![
        // Ended before this attempt (kept by a resume): not in the rate.
        item("old", 0, ItemState::Succeeded, Some((-5_000, -4_000))),
        item("a", 1, ItemState::Succeeded, Some((1_000, 2_000))),
        item("b", 2, ItemState::Failed, Some((1_000, 3_000))),
        item("c", 3, ItemState::Skipped, None),
    ];
    let c = &crate::report::runs::item_counts(&r, &[s], &[a], &items, T0 + 60_000)["each"];
    assert_eq!(
        (c.total, c.succeeded, c.failed, c.skipped, c.ended),
        (4, 2, 1, 1, 2)
    );
    assert_eq!(c.elapsed_ms, Some(4_000));
    assert_eq!(c.rate_per_s, Some(0.5));
    assert_eq!(c.eta_ms, None, "the step ended");
    assert_eq!(
        c.line(),
        "items of 4: 2 succeeded, 1 failed, 0 running, 0 left, 1 skipped · 0.50 items/s"
    );
}
