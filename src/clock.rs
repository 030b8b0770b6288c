//! The run's notion of "now", in local time.
//!
//! Snapshot names and retention are dated, so rehearsals and tests need to
//! pretend a different day: `WARD_NOW=2026-11-23T02:00:00` does that.

use chrono::{Local, NaiveDate, NaiveDateTime};

/// Unix milliseconds by the real clock, never `WARD_NOW`: what the state
/// records (run and step times) and what ages of records are measured
/// against; a rehearsal dated next year must neither misdate its records
/// nor make this year's look old. 0 if the clock is before 1970.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The environment variable that overrides the clock.
pub const WARD_NOW: &str = "WARD_NOW";

/// `WARD_NOW` holds text that is not a local time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{WARD_NOW}={0} is not a local time; write e.g. 2026-11-23T02:00:00 or 2026-11-23")]
pub struct BadNow(pub String);

/// The current local time, or `WARD_NOW` if set.
pub fn now() -> Result<NaiveDateTime, BadNow> {
    match std::env::var(WARD_NOW) {
        Ok(text) if !text.trim().is_empty() => parse(&text).ok_or(BadNow(text)),
        _ => Ok(Local::now().naive_local()),
    }
}

fn parse(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt);
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_documented_forms() {
        assert!(parse("2026-11-23T02:00:00").is_some());
        assert!(parse("2026-11-23 02:00:00").is_some());
        assert!(parse("2026-11-23").is_some());
        assert!(parse("23.11.2026").is_none());
    }
}
