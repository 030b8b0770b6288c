//! A crontab expression as systemd timer `OnCalendar=` values.
//!
//! Every expression ward accepts can be written this way: each field
//! becomes a list of values and ranges (`1..5`), and the crontab rule that
//! ORs the day fields when both are restricted becomes two `OnCalendar=`
//! lines (a timer fires on the union of its lines). systemd applies its own
//! rules at daylight-saving changes (docs/cli.md, `ward systemd`).

use super::CronExpr;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `values` as a systemd list: `*` when it is all of `all`, else values
/// and runs of three or more as `a..b`, each written by `show`.
fn list(values: &[u32], all: usize, show: impl Fn(u32) -> String) -> String {
    if values.len() == all {
        return "*".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}..{}", show(values[i]), show(values[j])));
        } else {
            parts.extend(values[i..=j].iter().map(|v| show(*v)));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// The `OnCalendar=` values that fire when `expr` does, in `zone` (an IANA
/// name appended to each value) or in the system's zone (`None`).
///
/// ```
/// use ward::schedule::{CronExpr, systemd::on_calendar};
/// let e = CronExpr::parse("30 2 * * mon-fri").unwrap();
/// assert_eq!(on_calendar(&e, None), ["Mon..Fri *-*-* 02:30:00"]);
/// ```
pub fn on_calendar(expr: &CronExpr, zone: Option<&str>) -> Vec<String> {
    let [minutes, hours, days, months, weekdays] = expr.values();
    let two = |v: u32| format!("{v:02}");
    let time = format!("{}:{}:00", list(&hours, 24, two), list(&minutes, 60, two));
    let month = list(&months, 12, two);
    let day = list(&days, 31, two);
    // systemd's weeks start on Monday; crontab's 0 is Sunday.
    let mut monday_first: Vec<u32> = weekdays.iter().map(|d| (d + 6) % 7).collect();
    monday_first.sort_unstable();
    let weekday = list(&monday_first, 7, |d| WEEKDAYS[d as usize].to_owned());
    let suffix = zone.map(|z| format!(" {z}")).unwrap_or_default();
    let line = |weekday: &str, day: &str| {
        let prefix = if weekday == "*" {
            String::new()
        } else {
            format!("{weekday} ")
        };
        format!("{prefix}*-{month}-{day} {time}{suffix}")
    };
    if expr.days_ored() && weekday != "*" && day != "*" {
        vec![line(&weekday, "*"), line("*", &day)]
    } else if expr.days_ored() {
        // One field covers every day: the OR matches every day.
        vec![line("*", "*")]
    } else {
        vec![line(&weekday, &day)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(text: &str) -> Vec<String> {
        on_calendar(&CronExpr::parse(text).expect(text), None)
    }

    #[test]
    fn translations() {
        assert_eq!(cal("*/15 * * * *"), ["*-*-* *:00,15,30,45:00"]);
        assert_eq!(cal("@daily"), ["*-*-* 00:00:00"]);
        assert_eq!(
            cal("0 0 1,15 * fri"),
            ["Fri *-*-* 00:00:00", "*-*-01,15 00:00:00"]
        );
        assert_eq!(cal("0 0 */10 * 1"), ["Mon *-*-01,11,21,31 00:00:00"]);
        assert_eq!(
            cal("5 1-10/3 * jan-mar 0,5-6"),
            ["Fri..Sun *-01..03-* 01,04,07,10:05:00"]
        );
        assert_eq!(cal("0 0 29 2 *"), ["*-02-29 00:00:00"]);
        assert_eq!(
            on_calendar(
                &CronExpr::parse("30 2 * * *").expect("p"),
                Some("Europe/Berlin")
            ),
            ["*-*-* 02:30:00 Europe/Berlin"]
        );
    }
}
