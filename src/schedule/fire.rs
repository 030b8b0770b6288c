//! When a crontab expression fires in a time zone, with cron's rules for
//! daylight saving changes.
//!
//! The rules are those of cronie's and Debian cron's main loop (`cron.c`:
//! the clock is compared with a "virtual" wall clock each minute, and the
//! difference sorted into small, medium, negative and large), stated as a
//! function of the zone's transitions so that they can be computed for any
//! instant, past or future:
//!
//! - an ordinary local minute that matches fires once, at its instant;
//! - **clocks go forward** by at most 3 hours (a gap): a *fixed-time* job
//!   (neither its minute nor its hour field starts with `*`) whose times
//!   fall into the gap fires once, at the instant of the change (the first
//!   minute after it, e.g. 03:00 for 02:30), however many of its times the
//!   gap held; a *wildcard* job's times in the gap do not fire (they are
//!   not on the wall clock that day). A gap of at most 5 minutes fires
//!   every job, wildcard or not, at the change; a gap over 3 hours fires
//!   nothing of it (cron jumps);
//! - **clocks go back** by at most 3 hours (a repeated hour): a fixed-time
//!   job fires only the first time through; a wildcard job fires both
//!   times (it follows the wall clock); past 3 hours every job fires both
//!   times.
//!
//! Instants are Unix seconds and local wall-clock times "civil seconds"
//! (seconds since 1970-01-01T00:00 on the local calendar), both `i64`.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::civil::{civil_from_days, days_from_civil, weekday};
use super::expr::CronExpr;

/// A gap up to this long fires every job of its minutes (cron's "small" case).
const SMALL_JUMP: i64 = 5 * 60;
/// A change longer than this is a jump, not daylight saving (cron's "large" case).
const LARGE_JUMP: i64 = 3 * 3600;
/// How far a search looks before it gives up (a 400-year Gregorian cycle
/// holds every date the fields can name).
const HORIZON: i64 = 401 * 366 * 86_400;
const DAY: i64 = 86_400;

/// One moment a schedule fires: the instant (Unix seconds) and the local
/// wall-clock slot (civil seconds) it stands for. They differ in a gap:
/// the 02:30 slot fires at the instant the clocks showed 03:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RawFire {
    pub at: i64,
    pub slot: i64,
}

/// An offset change: at Unix second `at`, from `before` to `after` seconds east of UTC.
#[derive(Clone, Copy, Debug)]
struct Transition {
    at: i64,
    before: i64,
    after: i64,
}

fn ts(t: i64) -> Option<Timestamp> {
    Timestamp::from_second(t).ok()
}

fn offset_at(tz: &TimeZone, t: i64) -> i64 {
    ts(t).map_or(0, |s| i64::from(tz.to_offset(s).seconds()))
}

/// The first change of offset strictly after `t`.
fn next_transition(tz: &TimeZone, t: i64) -> Option<Transition> {
    tz.following(ts(t)?)
        .map(|tr| (tr.timestamp().as_second(), i64::from(tr.offset().seconds())))
        .filter(|(at, _)| *at > t)
        .map(|(at, after)| Transition {
            at,
            before: offset_at(tz, at - 1),
            after,
        })
        .find(|tr| tr.before != tr.after)
}

/// The last change of offset at or before `t`.
fn prev_transition(tz: &TimeZone, t: i64) -> Option<Transition> {
    tz.preceding(ts(t.checked_add(1)?)?)
        .map(|tr| (tr.timestamp().as_second(), i64::from(tr.offset().seconds())))
        .filter(|(at, _)| *at <= t)
        .map(|(at, after)| Transition {
            at,
            before: offset_at(tz, at - 1),
            after,
        })
        .find(|tr| tr.before != tr.after)
}

fn ceil_minute(civil: i64) -> i64 {
    civil.div_euclid(60) * 60 + if civil.rem_euclid(60) == 0 { 0 } else { 60 }
}

fn floor_minute(civil: i64) -> i64 {
    civil.div_euclid(60) * 60
}

/// The first matching local minute in `[lo, hi)` (civil seconds).
pub(super) fn next_civil(expr: &CronExpr, lo: i64, hi: i64) -> Option<i64> {
    let lo = ceil_minute(lo);
    let mut day = lo.div_euclid(DAY);
    let mut sod = lo.rem_euclid(DAY);
    loop {
        if day.checked_mul(DAY)? >= hi {
            return None;
        }
        let (y, m, d) = civil_from_days(day);
        if !expr.month(m) {
            day = if m == 12 {
                days_from_civil(y + 1, 1, 1)
            } else {
                days_from_civil(y, m + 1, 1)
            };
            sod = 0;
            continue;
        }
        if expr.day(d, weekday(day)) {
            let mut hour = (sod / 3600) as u32;
            let mut from_minute = ((sod % 3600) / 60) as u32;
            while hour < 24 {
                if expr.hour(hour)
                    && let Some(minute) = expr.minute_at_or_after(from_minute)
                {
                    let t = day * DAY + i64::from(hour * 3600 + minute * 60);
                    return (t < hi).then_some(t);
                }
                hour += 1;
                from_minute = 0;
            }
        }
        day += 1;
        sod = 0;
    }
}

/// The last matching local minute in `[lo, hi]` (civil seconds).
pub(super) fn prev_civil(expr: &CronExpr, hi: i64, lo: i64) -> Option<i64> {
    let hi = floor_minute(hi);
    let mut day = hi.div_euclid(DAY);
    let mut sod = hi.rem_euclid(DAY);
    loop {
        if (day + 1).checked_mul(DAY)? <= lo {
            return None;
        }
        let (y, m, d) = civil_from_days(day);
        if !expr.month(m) {
            day = days_from_civil(y, m, 1) - 1;
            sod = DAY - 1;
            continue;
        }
        if expr.day(d, weekday(day)) {
            let mut hour = sod / 3600;
            let mut to_minute = ((sod % 3600) / 60) as u32;
            while hour >= 0 {
                if expr.hour(hour as u32)
                    && let Some(minute) = expr.minute_at_or_before(to_minute)
                {
                    let t = day * DAY + hour * 3600 + i64::from(minute) * 60;
                    return (t >= lo).then_some(t);
                }
                hour -= 1;
                to_minute = 59;
            }
        }
        day -= 1;
        sod = DAY - 1;
    }
}

/// The slot a gap fires for at its change, if any: the first matching
/// local minute the gap skipped, when the rules above fire it.
fn gap_fire(expr: &CronExpr, tr: &Transition) -> Option<i64> {
    let len = tr.after - tr.before;
    if len <= 0 || len > LARGE_JUMP || (expr.is_wildcard() && len > SMALL_JUMP) {
        return None;
    }
    next_civil(expr, tr.at + tr.before, tr.at + tr.after)
}

/// Where the local minutes of the segment starting at `tr` may fire from:
/// after a repeated hour (clocks back by at most 3 hours) a fixed-time job
/// does not fire again until the wall clock passes where it was.
fn fold_floor(expr: &CronExpr, tr: &Transition) -> Option<i64> {
    let len = tr.before - tr.after;
    (len > 0 && len <= LARGE_JUMP && !expr.is_wildcard()).then_some(tr.at + tr.before)
}

/// The first fire at or after Unix second `from`.
pub(super) fn next_at_or_after(expr: &CronExpr, tz: &TimeZone, from: i64) -> Option<RawFire> {
    let limit = from.checked_add(HORIZON)?;
    let mut from = from;
    while from <= limit {
        let off = offset_at(tz, from);
        let start = prev_transition(tz, from);
        let end = next_transition(tz, from);
        let mut lo = from.checked_add(off)?;
        if let Some(floor) = start.as_ref().and_then(|s| fold_floor(expr, s)) {
            lo = lo.max(floor);
        }
        let hi = end.map_or(limit + off, |e| e.at + off);
        if let Some(slot) = next_civil(expr, lo, hi) {
            return Some(RawFire {
                at: slot - off,
                slot,
            });
        }
        let end = end?;
        if let Some(slot) = gap_fire(expr, &end) {
            return Some(RawFire { at: end.at, slot });
        }
        from = end.at;
    }
    None
}

/// The last fire at or before Unix second `to`.
pub(super) fn last_at_or_before(expr: &CronExpr, tz: &TimeZone, to: i64) -> Option<RawFire> {
    let limit = to.checked_sub(HORIZON)?;
    let mut to = to;
    while to >= limit {
        let off = offset_at(tz, to);
        let start = prev_transition(tz, to);
        let mut lo = start.map_or(limit + off, |s| s.at + off);
        if let Some(floor) = start.as_ref().and_then(|s| fold_floor(expr, s)) {
            lo = lo.max(floor);
        }
        let gap = start.as_ref().and_then(|s| gap_fire(expr, s));
        if let Some(slot) = prev_civil(expr, to.checked_add(off)?, lo) {
            let at = slot - off;
            // The change's own minute (03:00) and the gap's slots fire at
            // one instant; name the earliest slot, as the forward search does.
            let slot = match (start, gap) {
                (Some(s), Some(g)) if s.at == at => g,
                _ => slot,
            };
            return Some(RawFire { at, slot });
        }
        let start = start?;
        if let Some(slot) = gap {
            return Some(RawFire { at: start.at, slot });
        }
        to = start.at - 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_search_both_ways() {
        let e = CronExpr::parse("0 0 29 2 *").expect("p");
        let from = days_from_civil(2026, 12, 2) * DAY;
        let next = next_civil(&e, from, i64::MAX).expect("a Feb 29");
        assert_eq!(civil_from_days(next / DAY), (2028, 2, 29));
        let prev = prev_civil(&e, from, i64::MIN / 2).expect("a Feb 29");
        assert_eq!(civil_from_days(prev / DAY), (2024, 2, 29));
        let e = CronExpr::parse("0 0 29 2 */7").expect("Feb 29 that is a Sunday");
        let next = next_civil(&e, from, i64::MAX).expect("found");
        assert_eq!(civil_from_days(next / DAY), (2032, 2, 29));
    }
}
