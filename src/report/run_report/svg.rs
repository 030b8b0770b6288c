//! The timeline picture as inline SVG: time on the x axis from the run's
//! start, one bar per attempt, coloured by how it ended, in the lanes
//! `Timeline` chose (attempts that ran at once sit one above the other),
//! the downtime window shaded behind them, resumes marked.
//!
//! Every number is written by this file and every text escaped
//! (`text::xml`); colours are attributes, not a style sheet, so the picture
//! looks the same cut out of the page. The bars and the window carry
//! `data-*` attributes with their exact times (ms from the run's start),
//! for tests and for anyone who reads the file with a tool.

use std::fmt::Write as _;

use super::text::{duration, offset, xml};
use super::{Bar, ItemStrip, Timeline, outcome_class};
use crate::state::{AttemptOutcome, ItemState};

/// The picture's width in SVG units (pixels at 100%).
const WIDTH: f64 = 960.0;
/// Space left and right of the time axis.
const PAD: f64 = 16.0;
/// Height of the legend row above the lanes.
const TOP: f64 = 42.0;
/// Height of one lane, and of a bar in it.
const LANE: f64 = 30.0;
const BAR: f64 = 22.0;
/// Height of the axis with its labels below the lanes.
const AXIS: f64 = 36.0;
/// The narrowest bar drawn, so that a 3 ms step is still seen.
const MIN_BAR: f64 = 2.0;
/// About how wide one character of the labels is (11px sans-serif).
const CHAR: f64 = 6.6;

/// The fill of a bar by how its attempt ended.
fn colour(outcome: Option<AttemptOutcome>) -> &'static str {
    match outcome {
        Some(AttemptOutcome::Succeeded) => "#2e7d32",
        Some(AttemptOutcome::Failed) => "#c62828",
        Some(AttemptOutcome::TimedOut) => "#ef6c00",
        Some(AttemptOutcome::Interrupted) => "#6a1b9a",
        None => "#78909c",
    }
}

/// The timeline as one `<svg>` element.
pub fn render(t: &Timeline) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_svg(&mut out, t);
    out
}

fn write_svg(out: &mut String, t: &Timeline) -> std::fmt::Result {
    let lanes = t.lanes.max(1);
    let height = TOP + lanes as f64 * LANE + AXIS;
    let plot_w = WIDTH - 2.0 * PAD;
    let span = t.span_ms.max(1) as f64;
    let x = |ms: i64| PAD + (ms.clamp(0, t.span_ms) as f64 / span) * plot_w;
    let lanes_bottom = TOP + lanes as f64 * LANE;
    writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Timeline of the run: {} attempt(s) in {} lane(s) over {}" font-family="sans-serif" font-size="11">"##,
        t.bars.len(),
        lanes,
        xml(&duration(Some(t.span_ms)))
    )?;
    writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    )?;
    legend(out, t)?;
    // Lane stripes, so a reader's eye keeps to a lane.
    for lane in 0..lanes {
        let y = TOP + lane as f64 * LANE;
        let fill = if lane % 2 == 0 { "#f5f5f5" } else { "#ffffff" };
        writeln!(
            out,
            r##"<rect class="lane" x="{PAD}" y="{y:.1}" width="{plot_w:.1}" height="{LANE}" fill="{fill}"/>"##
        )?;
    }
    if let Some(d) = &t.downtime {
        let (x0, x1) = (x(d.start_ms), x(d.end_ms));
        let title = match (&d.start_step, d.closed) {
            (Some(s), true) => format!(
                "downtime {} to {} ({}): from the start of {} to the end of {s}",
                offset(d.start_ms),
                offset(d.end_ms),
                duration(Some(d.end_ms - d.start_ms)),
                d.stop_step
            ),
            _ => format!(
                "downtime from {} (start of {}) to the end of the run: no service.start step ended after it",
                offset(d.start_ms),
                d.stop_step
            ),
        };
        writeln!(
            out,
            r##"<rect class="downtime" data-start-ms="{}" data-end-ms="{}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#ffb300" fill-opacity="0.18" stroke="#ff8f00" stroke-dasharray="4 3"><title>{}</title></rect>"##,
            d.start_ms,
            d.end_ms,
            TOP - 4.0,
            (x1 - x0).max(1.0),
            lanes as f64 * LANE + 8.0,
            xml(&title)
        )?;
        writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#e65100" font-size="10">downtime</text>"##,
            x0 + 3.0,
            TOP - 8.0
        )?;
    }
    axis(out, t.span_ms, &x, TOP, lanes_bottom)?;
    for &ms in &t.resumes {
        let xr = x(ms);
        writeln!(
            out,
            r##"<line class="resume" x1="{xr:.1}" y1="{:.1}" x2="{xr:.1}" y2="{lanes_bottom:.1}" stroke="#1565c0" stroke-dasharray="2 2"><title>resumed at {}</title></line>"##,
            TOP - 4.0,
            xml(&offset(ms))
        )?;
    }
    for (i, b) in t.bars.iter().enumerate() {
        // The room beside the bar in its lane: up to the next bar's start
        // and from the previous bar's end (bars are sorted by start).
        let same_lane = |c: &&Bar| c.lane == b.lane;
        let next = t.bars[i + 1..]
            .iter()
            .find(same_lane)
            .map(|c| x(c.start_ms));
        let prev = t.bars[..i]
            .iter()
            .rev()
            .find(same_lane)
            .map(|c| x(c.end_ms));
        bar(out, b, &x, prev.unwrap_or(PAD), next.unwrap_or(WIDTH - PAD))?;
    }
    writeln!(out, "</svg>")
}

fn legend(out: &mut String, t: &Timeline) -> std::fmt::Result {
    let mut lx = PAD;
    let mut items: Vec<(&str, &str)> = [
        Some(AttemptOutcome::Succeeded),
        Some(AttemptOutcome::Failed),
        Some(AttemptOutcome::TimedOut),
        Some(AttemptOutcome::Interrupted),
        None,
    ]
    .into_iter()
    .map(|o| (outcome_class(o), colour(o)))
    .collect();
    if t.downtime.is_some() {
        items.push(("downtime", "#ffb300"));
    }
    for (word, fill) in items {
        writeln!(
            out,
            r##"<rect x="{lx:.1}" y="10" width="10" height="10" fill="{fill}"/><text x="{:.1}" y="19" fill="#333333">{word}</text>"##,
            lx + 14.0
        )?;
        lx += 14.0 + word.len() as f64 * CHAR + 14.0;
    }
    Ok(())
}

/// A tick every this many ms: the first of these that gives at most ten
/// ticks over the span.
const TICK_STEPS: [i64; 27] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
    43_200_000, 86_400_000,
];

/// The tick spacing for a span: at most ten ticks (days beyond).
pub(super) fn tick_step(span_ms: i64) -> i64 {
    TICK_STEPS
        .iter()
        .copied()
        .find(|s| span_ms / s <= 10)
        .unwrap_or_else(|| {
            let days = (span_ms / 86_400_000 / 10).max(1) + 1;
            days * 86_400_000
        })
}

/// A tick's label in the unit its spacing suits: `250ms`, `15s`, `2m30s`,
/// `1h30m`, `2d`.
pub(super) fn tick_label(ms: i64, step: i64) -> String {
    if step < 100 {
        return format!("{ms}ms");
    }
    if step < 1_000 {
        return if ms == 0 {
            "0s".to_owned()
        } else {
            format!("{:.1}s", ms as f64 / 1_000.0)
        };
    }
    let s = ms / 1_000;
    if step < 60_000 {
        return if s >= 60 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{s}s")
        };
    }
    let m = s / 60;
    if step < 3_600_000 {
        return if m >= 60 {
            format!("{}h{:02}m", m / 60, m % 60)
        } else if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{:02}s", s % 60)
        };
    }
    let h = m / 60;
    if step < 86_400_000 {
        return if h >= 24 {
            format!("{}d{}h", h / 24, h % 24)
        } else if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{:02}m", m % 60)
        };
    }
    format!("{}d", h / 24)
}

fn axis(
    out: &mut String,
    span_ms: i64,
    x: &dyn Fn(i64) -> f64,
    top: f64,
    lanes_bottom: f64,
) -> std::fmt::Result {
    let y = lanes_bottom + 6.0;
    writeln!(
        out,
        r##"<line class="axis" x1="{PAD}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555555"/>"##,
        WIDTH - PAD
    )?;
    let step = tick_step(span_ms);
    let mut ms = 0;
    while ms <= span_ms {
        let tx = x(ms);
        let anchor = if ms == 0 { "start" } else { "middle" };
        writeln!(
            out,
            r##"<line class="tick" x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#dddddd"/><text class="tick-label" x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#555555">{}</text>"##,
            top - 4.0,
            y + 4.0,
            y + 18.0,
            xml(&tick_label(ms, step))
        )?;
        ms += step;
    }
    Ok(())
}

/// One attempt's bar, its label inside it when it fits, else in the free
/// room after it (up to `right`) or before it (from `left`), else none:
/// the bar's tooltip still names it.
fn bar(
    out: &mut String,
    b: &Bar,
    x: &dyn Fn(i64) -> f64,
    left: f64,
    right: f64,
) -> std::fmt::Result {
    let x0 = x(b.start_ms);
    let w = (x(b.end_ms) - x0).max(MIN_BAR);
    let y = TOP + b.lane as f64 * LANE + (LANE - BAR) / 2.0;
    let label = if b.attempt > 1 {
        format!("{} #{}", b.step_id, b.attempt)
    } else {
        b.step_id.clone()
    };
    let title = format!(
        "{} attempt {}: {}, {} to {} ({})",
        b.step_id,
        b.attempt,
        outcome_class(b.outcome),
        offset(b.start_ms),
        offset(b.end_ms),
        duration(Some(b.end_ms - b.start_ms))
    );
    writeln!(
        out,
        r##"<g class="attempt"><title>{}</title><rect class="bar {}" data-step="{}" data-attempt="{}" data-lane="{}" data-start-ms="{}" data-end-ms="{}" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" rx="3" fill="{}"/>"##,
        xml(&title),
        outcome_class(b.outcome),
        xml(&b.step_id),
        b.attempt,
        b.lane,
        b.start_ms,
        b.end_ms,
        colour(b.outcome)
    )?;
    let text_w = label.chars().count() as f64 * CHAR;
    let ty = y + BAR / 2.0 + 4.0;
    let place = if text_w + 8.0 <= w {
        Some((x0 + 4.0, "#ffffff", "start"))
    } else if x0 + w + 4.0 + text_w <= right {
        Some((x0 + w + 4.0, "#222222", "start"))
    } else if x0 - 4.0 - text_w >= left {
        Some((x0 - 4.0, "#222222", "end"))
    } else {
        None
    };
    if let Some((tx, fill, anchor)) = place {
        write!(
            out,
            r##"<text class="bar-label" x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" fill="{fill}">{}</text>"##,
            xml(&label)
        )?;
    }
    writeln!(out, "</g>")
}

/// Height of one lane of item bars, and of an item's bar in it: items
/// are many, so their lanes are thin.
const ITEM_LANE: f64 = 12.0;
const ITEM_BAR: f64 = 9.0;
/// Height of the histogram of a strip of many items.
const HISTOGRAM: f64 = 90.0;
/// Height of the legend row above a strip.
const ITEM_TOP: f64 = 30.0;

/// The fill of an item by its state.
fn item_colour(state: ItemState) -> &'static str {
    match state {
        ItemState::Succeeded => "#2e7d32",
        ItemState::Failed => "#c62828",
        ItemState::Running => "#78909c",
        // Stopped by a signal: pending again (or held by `ward pause`).
        ItemState::Pending | ItemState::Skipped | ItemState::Paused => "#6a1b9a",
    }
}

/// The word a strip's legend uses for a state (pending items on it were
/// stopped: they ran, and will run again).
fn item_word(state: ItemState) -> &'static str {
    match state {
        ItemState::Pending | ItemState::Skipped | ItemState::Paused => "stopped",
        s => s.as_str(),
    }
}

/// A `for_each` step's items as one `<svg>` strip: a bar per item in
/// lanes, or, for many items, a histogram of how many ended in each slice
/// of the time axis, stacked by state.
pub fn render_items(step: &str, strip: &ItemStrip) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_items(&mut out, step, strip);
    out
}

fn write_items(out: &mut String, step: &str, s: &ItemStrip) -> std::fmt::Result {
    let plot_h = if s.bars.is_empty() {
        HISTOGRAM
    } else {
        s.lanes.max(1) as f64 * ITEM_LANE
    };
    let height = ITEM_TOP + plot_h + AXIS;
    let plot_w = WIDTH - 2.0 * PAD;
    let span = s.span_ms.max(1) as f64;
    let x = |ms: i64| PAD + (ms.clamp(0, s.span_ms) as f64 / span) * plot_w;
    let kind = if s.bars.is_empty() { "buckets" } else { "bars" };
    writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="items" data-step="{}" data-kind="{kind}" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Items of step {} over {}" font-family="sans-serif" font-size="11">"##,
        xml(step),
        xml(step),
        xml(&duration(Some(s.span_ms)))
    )?;
    writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/><rect x="{PAD}" y="{ITEM_TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="#f5f5f5"/>"##
    )?;
    let mut lx = PAD;
    for state in [
        ItemState::Succeeded,
        ItemState::Failed,
        ItemState::Pending,
        ItemState::Running,
    ] {
        let word = item_word(state);
        writeln!(
            out,
            r##"<rect x="{lx:.1}" y="8" width="10" height="10" fill="{}"/><text x="{:.1}" y="17" fill="#333333">{word}</text>"##,
            item_colour(state),
            lx + 14.0
        )?;
        lx += 14.0 + word.len() as f64 * CHAR + 14.0;
    }
    axis(out, s.span_ms, &x, ITEM_TOP, ITEM_TOP + plot_h)?;
    for b in &s.bars {
        let x0 = x(b.start_ms);
        let w = (x(b.end_ms) - x0).max(MIN_BAR / 2.0);
        let y = ITEM_TOP + b.lane as f64 * ITEM_LANE + (ITEM_LANE - ITEM_BAR) / 2.0;
        writeln!(
            out,
            r##"<rect class="item {}" data-key="{}" data-start-ms="{}" data-end-ms="{}" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{ITEM_BAR}" fill="{}"><title>{}</title></rect>"##,
            item_word(b.state),
            xml(&b.key),
            b.start_ms,
            b.end_ms,
            item_colour(b.state),
            xml(&format!(
                "{}: {}, {} to {} ({})",
                b.key,
                item_word(b.state),
                offset(b.start_ms),
                offset(b.end_ms),
                duration(Some(b.end_ms - b.start_ms))
            ))
        )?;
    }
    let most = s
        .buckets
        .iter()
        .map(|b| b.succeeded + b.failed + b.stopped + b.running)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    for b in &s.buckets {
        let total = b.succeeded + b.failed + b.stopped + b.running;
        if total == 0 {
            continue;
        }
        let x0 = x(b.start_ms);
        let w = (x(b.end_ms) - x0).max(1.0);
        write!(
            out,
            r##"<g class="bucket" data-start-ms="{}" data-end-ms="{}" data-succeeded="{}" data-failed="{}" data-stopped="{}" data-running="{}"><title>{}</title>"##,
            b.start_ms,
            b.end_ms,
            b.succeeded,
            b.failed,
            b.stopped,
            b.running,
            xml(&format!(
                "{} to {}: {} succeeded, {} failed, {} stopped, {} running",
                offset(b.start_ms),
                offset(b.end_ms),
                b.succeeded,
                b.failed,
                b.stopped,
                b.running
            ))
        )?;
        // Stacked from the bottom: succeeded, then failed, stopped, running.
        let mut y = ITEM_TOP + plot_h;
        for (n, state) in [
            (b.succeeded, ItemState::Succeeded),
            (b.failed, ItemState::Failed),
            (b.stopped, ItemState::Pending),
            (b.running, ItemState::Running),
        ] {
            if n == 0 {
                continue;
            }
            let h = (n as f64 / most * plot_h).max(1.0);
            y -= h;
            write!(
                out,
                r##"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/>"##,
                item_colour(state)
            )?;
        }
        writeln!(out, "</g>")?;
    }
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_at_most_ten_in_sensible_units() {
        assert_eq!(tick_step(800), 100);
        assert_eq!(tick_step(4_200), 500);
        assert_eq!(tick_step(95_000), 10_000);
        assert_eq!(tick_step(3 * 3_600_000), 1_800_000);
        assert_eq!(tick_label(1_500, 500), "1.5s");
        assert_eq!(tick_label(40, 10), "40ms");
        assert_eq!(tick_label(90_000, 10_000), "1m30s");
        assert_eq!(tick_label(5_400_000, 1_800_000), "1h30m");
        assert_eq!(tick_label(7_200_000, 3_600_000), "2h");
        assert_eq!(tick_label(2 * 86_400_000, 86_400_000), "2d");
        for span in [1, 999, 61_000, 86_400_000 * 40] {
            assert!(span / tick_step(span) <= 10, "{span}");
        }
    }
}
