//! Fire times against known crontab behaviour, and against a simulation
//! of cron's own main loop (cronie's and Debian cron's `cron.c`) minute by
//! minute across daylight-saving changes.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::civil::{civil_from_days, weekday};
use super::{CronExpr, Schedule, Zone};

fn schedule(expr: &str, zone: &str) -> Schedule {
    Schedule::new(
        CronExpr::parse(expr).expect(expr),
        Zone::named(zone).expect(zone),
    )
}

fn instant(local: &str, zone: &str) -> Timestamp {
    let dt: jiff::civil::DateTime = local.parse().expect(local);
    dt.to_zoned_datetime(TimeZone::get(zone).expect(zone))
        .expect("a local time")
        .timestamp()
}

/// The next `n` fires after `from` (a local time in `zone`), each as
/// `2026-03-29T03:00+02:00`, with ` (02:30)` when a clock change moved it.
fn next(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let s = schedule(expr, zone);
    s.upcoming(instant(from, zone), n)
        .iter()
        .map(|f| {
            let mut text = f.at.strftime("%Y-%m-%dT%H:%M%:z").to_string();
            if f.moved() {
                text.push_str(&f.slot.strftime(" (%H:%M)").to_string());
            }
            text
        })
        .collect()
}

#[test]
fn ordinary_fields_in_utc() {
    let z = "UTC";
    // Both day fields restricted: either may match (Jan 1 2026 is a Thursday).
    assert_eq!(
        next("0 0 1,15 * fri", z, "2025-12-31T12:00", 6),
        [
            "2026-01-01T00:00+00:00",
            "2026-01-02T00:00+00:00",
            "2026-01-09T00:00+00:00",
            "2026-01-15T00:00+00:00",
            "2026-01-16T00:00+00:00",
            "2026-01-23T00:00+00:00",
        ]
    );
    // A day field starting with `*` is ANDed: the 1st/11th/21st/31st that are Mondays.
    assert_eq!(
        next("0 0 */10 * mon", z, "2026-01-01T00:00", 3),
        [
            "2026-05-11T00:00+00:00",
            "2026-06-01T00:00+00:00",
            "2026-08-31T00:00+00:00"
        ]
    );
    assert_eq!(
        next("*/15 * * * *", z, "2026-11-23T01:50", 3),
        [
            "2026-11-23T02:00+00:00",
            "2026-11-23T02:15+00:00",
            "2026-11-23T02:30+00:00"
        ]
    );
    assert_eq!(
        next("5 1-10/3 * * *", z, "2026-11-23T00:00", 5),
        [
            "2026-11-23T01:05+00:00",
            "2026-11-23T04:05+00:00",
            "2026-11-23T07:05+00:00",
            "2026-11-23T10:05+00:00",
            "2026-11-24T01:05+00:00",
        ]
    );
    assert_eq!(
        next("30 2 * jan,Jul SUN", z, "2026-06-30T00:00", 3),
        [
            "2026-07-05T02:30+00:00",
            "2026-07-12T02:30+00:00",
            "2026-07-19T02:30+00:00"
        ]
    );
    assert_eq!(
        next("0 0 29 2 *", z, "2026-12-02T00:00", 3),
        [
            "2028-02-29T00:00+00:00",
            "2032-02-29T00:00+00:00",
            "2036-02-29T00:00+00:00"
        ]
    );
    // 2100 is not a leap year.
    assert_eq!(
        next("0 0 29 2 *", z, "2096-03-01T00:00", 1),
        ["2104-02-29T00:00+00:00"]
    );
    assert_eq!(
        next("0 12 * * 7", z, "2026-12-02T00:00", 1),
        ["2026-12-06T12:00+00:00"],
        "7 is Sunday"
    );
}

#[test]
fn macros_in_utc() {
    let z = "UTC";
    let from = "2026-12-02T10:00";
    assert_eq!(next("@yearly", z, from, 1), ["2027-01-01T00:00+00:00"]);
    assert_eq!(next("@annually", z, from, 1), ["2027-01-01T00:00+00:00"]);
    assert_eq!(next("@monthly", z, from, 1), ["2027-01-01T00:00+00:00"]);
    assert_eq!(next("@weekly", z, from, 1), ["2026-12-06T00:00+00:00"]);
    assert_eq!(next("@daily", z, from, 1), ["2026-12-03T00:00+00:00"]);
    assert_eq!(next("@midnight", z, from, 1), ["2026-12-03T00:00+00:00"]);
    assert_eq!(next("@hourly", z, from, 1), ["2026-12-02T11:00+00:00"]);
}

#[test]
fn berlin_spring_forward_2026() {
    let z = "Europe/Berlin";
    // 2026-03-29: 02:00 CET becomes 03:00 CEST.
    assert_eq!(
        next("30 2 * * *", z, "2026-03-27T12:00", 3),
        [
            "2026-03-28T02:30+01:00",
            "2026-03-29T03:00+02:00 (02:30)",
            "2026-03-30T02:30+02:00"
        ]
    );
    // Several skipped times of a fixed job: one fire at the change; 03:00 is that instant too.
    assert_eq!(
        next("0,30 2,3 * * *", z, "2026-03-29T00:00", 3),
        [
            "2026-03-29T03:00+02:00 (02:00)",
            "2026-03-29T03:30+02:00",
            "2026-03-30T02:00+02:00"
        ]
    );
    // Wildcard jobs follow the wall clock: 02:xx did not happen.
    assert_eq!(
        next("*/15 * * * *", z, "2026-03-29T01:30", 3),
        [
            "2026-03-29T01:45+01:00",
            "2026-03-29T03:00+02:00",
            "2026-03-29T03:15+02:00"
        ]
    );
    assert_eq!(
        next("0 * * * *", z, "2026-03-29T00:30", 3),
        [
            "2026-03-29T01:00+01:00",
            "2026-03-29T03:00+02:00",
            "2026-03-29T04:00+02:00"
        ]
    );
    // A minute field starting with `*` makes it a wildcard job: skipped that day.
    assert_eq!(
        next("*/30 2 * * *", z, "2026-03-28T12:00", 2),
        ["2026-03-30T02:00+02:00", "2026-03-30T02:30+02:00"]
    );
}

#[test]
fn berlin_fall_back_2026() {
    let z = "Europe/Berlin";
    // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
    assert_eq!(
        next("30 2 * * *", z, "2026-10-24T12:00", 2),
        ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]
    );
    assert_eq!(
        next("*/30 * * * *", z, "2026-10-25T01:45", 5),
        [
            "2026-10-25T02:00+02:00",
            "2026-10-25T02:30+02:00",
            "2026-10-25T02:00+01:00",
            "2026-10-25T02:30+01:00",
            "2026-10-25T03:00+01:00"
        ]
    );
    assert_eq!(
        next("0 * * * *", z, "2026-10-25T01:30", 3),
        [
            "2026-10-25T02:00+02:00",
            "2026-10-25T02:00+01:00",
            "2026-10-25T03:00+01:00"
        ]
    );
    assert_eq!(
        next("0 3 * * *", z, "2026-10-24T12:00", 2),
        ["2026-10-25T03:00+01:00", "2026-10-26T03:00+01:00"]
    );
}

#[test]
fn new_york_both_changes_2026() {
    let z = "America/New_York";
    // 2026-03-08: 02:00 EST becomes 03:00 EDT.
    assert_eq!(
        next("30 2 * * *", z, "2026-03-07T12:00", 2),
        ["2026-03-08T03:00-04:00 (02:30)", "2026-03-09T02:30-04:00"]
    );
    assert_eq!(
        next("*/20 2 * * *", z, "2026-03-07T12:00", 1),
        ["2026-03-09T02:00-04:00"]
    );
    // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:xx happens twice.
    assert_eq!(
        next("30 1 * * *", z, "2026-10-31T12:00", 2),
        ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"]
    );
    assert_eq!(
        next("*/20 1 * * *", z, "2026-10-31T12:00", 6),
        [
            "2026-11-01T01:00-04:00",
            "2026-11-01T01:20-04:00",
            "2026-11-01T01:40-04:00",
            "2026-11-01T01:00-05:00",
            "2026-11-01T01:20-05:00",
            "2026-11-01T01:40-05:00"
        ]
    );
}

#[test]
fn looking_back_agrees_with_looking_forward() {
    for (expr, zone) in [
        ("30 2 * * *", "Europe/Berlin"),
        ("*/30 * * * *", "Europe/Berlin"),
        ("0,30 1,2 * * *", "America/New_York"),
        ("*/20 1 * * *", "America/New_York"),
        ("15 2 * * 0", "Australia/Lord_Howe"),
    ] {
        let s = schedule(expr, zone);
        let start = instant("2026-01-01T00:00", zone);
        let end = instant("2027-01-01T00:00", zone);
        let fires: Vec<Timestamp> = s
            .fires_between(start, end)
            .map(|f| f.at.timestamp())
            .collect();
        assert!(fires.len() > 50, "{expr} {zone}");
        for pair in fires.windows(2) {
            let prev = s.previous_before(pair[1]).expect("a fire before");
            assert_eq!(
                prev.at.timestamp(),
                pair[0],
                "{expr} in {zone} before {}",
                pair[1]
            );
            let last = s.last_at_or_before(pair[1]).expect("itself");
            assert_eq!(last.at.timestamp(), pair[1]);
            let between = pair[1] - jiff::SignedDuration::from_secs(1);
            let last = s.last_at_or_before(between).expect("a fire");
            assert_eq!(last.at.timestamp(), pair[0]);
        }
    }
}

#[test]
fn missed_slots_on_the_night_of_a_change() {
    let z = "Europe/Berlin";
    let s = schedule("*/15 * * * *", z);
    let off = instant("2026-10-25T01:00", z);
    let on = instant("2026-10-25T04:00", z);
    // 01:00-04:00 on the fall-back night is four real hours: 16 slots.
    assert_eq!(s.fires_between(off, on).count(), 16);
    let s = schedule("30 2 * * *", z);
    assert_eq!(s.fires_between(off, on).count(), 1);
    let spring_off = instant("2026-03-29T01:00", z);
    let spring_on = instant("2026-03-29T04:00", z);
    assert_eq!(s.fires_between(spring_off, spring_on).count(), 1);
    let s = schedule("*/15 * * * *", z);
    // Two real hours, 01:00-04:00 local: 8 slots.
    assert_eq!(s.fires_between(spring_off, spring_on).count(), 8);
}

/// Does `expr` match the local minute `local_minute` (minutes since 1970 on
/// the local calendar)? Read from the fields, not from the search code.
fn matches(expr: &CronExpr, local_minute: i64) -> bool {
    let days = local_minute.div_euclid(1440);
    let mod_day = local_minute.rem_euclid(1440) as u32;
    let (_, month, day) = civil_from_days(days);
    expr.minute(mod_day % 60)
        && expr.hour(mod_day / 60)
        && expr.month(month)
        && expr.day(day, weekday(days))
}

/// cron's main loop, minute by real minute from `start` to `end` (Unix
/// seconds on minute boundaries): the instants at which it starts the job.
fn simulate_cron(expr: &CronExpr, tz: &TimeZone, start: i64, end: i64) -> BTreeSet<i64> {
    let local = |t: i64| {
        let off = tz
            .to_offset(Timestamp::from_second(t).expect("t"))
            .seconds();
        (t + i64::from(off)).div_euclid(60)
    };
    let wild = expr.is_wildcard();
    let mut fired = BTreeSet::new();
    let mut virtual_time = local(start);
    let mut t = start + 60;
    while t <= end {
        let running = local(t);
        let diff = running - virtual_time;
        let mut find = |minute: i64, do_wild: bool, do_fixed: bool| {
            if matches(expr, minute) && ((do_wild && wild) || (do_fixed && !wild)) {
                fired.insert(t);
            }
        };
        // In step (1), or a jump of over 3 hours either way: run what is due now.
        if diff == 1 || !(-180..=180).contains(&diff) {
            virtual_time = running;
            find(running, true, true);
        } else if diff > 5 {
            find(running, true, false);
            while virtual_time < running {
                virtual_time += 1;
                find(virtual_time, false, true);
            }
        } else if diff > 0 {
            while virtual_time < running {
                virtual_time += 1;
                find(virtual_time, true, true);
            }
        } else {
            find(running, true, false);
        }
        t += 60;
    }
    fired
}

#[test]
fn fire_times_match_a_simulation_of_cron_around_each_change() {
    let exprs = [
        "30 2 * * *",
        "0,30 1,2,3 * * *",
        "*/15 * * * *",
        "0 * * * *",
        "*/10 2 * * *",
        "45 1 * * *",
        "0 3 * * *",
        "@daily",
        "59 * * * *",
        "15 2-3 * * sun",
    ];
    // Windows of two days around transitions: Berlin and New York in 2026
    // (1 hour), Lord Howe (30 minutes), Samoa's skipped day in 2011
    // (24 hours: a jump, not daylight saving), and an ordinary week.
    let windows = [
        ("Europe/Berlin", "2026-03-28T12:00", "2026-03-30T12:00"),
        ("Europe/Berlin", "2026-10-24T12:00", "2026-10-26T12:00"),
        ("America/New_York", "2026-03-07T12:00", "2026-03-09T12:00"),
        ("America/New_York", "2026-10-31T12:00", "2026-11-02T12:00"),
        (
            "Australia/Lord_Howe",
            "2026-04-04T12:00",
            "2026-04-06T12:00",
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-03T12:00",
            "2026-10-05T12:00",
        ),
        ("Pacific/Apia", "2011-12-28T12:00", "2011-12-31T12:00"),
        ("UTC", "2026-11-20T00:00", "2026-11-27T00:00"),
    ];
    for (zone, from, to) in windows {
        let tz = TimeZone::get(zone).expect(zone);
        let start = instant(from, zone);
        let end = instant(to, zone);
        for text in exprs {
            let s = schedule(text, zone);
            let ours: BTreeSet<i64> = s
                .fires_between(start, end)
                .map(|f| f.at.timestamp().as_second())
                .collect();
            let cron = simulate_cron(s.expr(), &tz, start.as_second(), end.as_second());
            let show = |set: &BTreeSet<i64>| -> Vec<String> {
                set.iter()
                    .map(|t| {
                        Timestamp::from_second(*t)
                            .expect("t")
                            .to_zoned_datetime(tz.clone())
                            .strftime("%m-%d %H:%M%:z")
                            .to_string()
                    })
                    .collect()
            };
            assert_eq!(show(&ours), show(&cron), "`{text}` in {zone} from {from}");
        }
    }
}

#[test]
fn unknown_zones_get_a_suggestion() {
    let e = Zone::named("Europe/Berln").expect_err("no such zone");
    assert_eq!(e.suggestion.as_deref(), Some("Europe/Berlin"));
    assert!(Zone::named("Mars/Olympus").is_err());
}

#[test]
fn zones_with_the_same_rules_are_the_same() {
    let now = instant("2026-12-02T00:00", "UTC");
    let utc = Zone::named("UTC").expect("UTC");
    assert!(utc.same_rules_as(&Zone::named("Etc/UTC").expect("Etc/UTC"), now));
    let berlin = Zone::named("Europe/Berlin").expect("Berlin");
    assert!(berlin.same_rules_as(&Zone::named("Europe/Berlin").expect("Berlin"), now));
    assert!(!berlin.same_rules_as(&utc, now));
    assert!(!berlin.same_rules_as(&Zone::named("Africa/Lagos").expect("Lagos"), now));
}

/// Random text from crontab's alphabet never panics the parser, errors
/// point inside the text, and what parses reads back the same from the
/// fields ward writes into a crontab line.
#[test]
fn random_expressions_parse_or_fail_with_a_place() {
    let mut rng = fastrand::Rng::with_seed(13);
    let pieces = [
        "0", "1", "5", "7", "12", "29", "31", "59", "60", "99", "*", "/", ",", "-", " ", " ", " ",
        "\t", "@", "daily", "reboot", "mon", "FRI", "jan", "Dec", "sun", "L", "?", "#",
    ];
    for _ in 0..20_000 {
        let len = rng.usize(0..14);
        let text: String = (0..len)
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect();
        match CronExpr::parse(&text) {
            Ok(e) => {
                let again = CronExpr::parse(&e.crontab_fields()).expect("its own fields parse");
                assert_eq!(again.values(), e.values(), "{text:?}");
                assert_eq!(again.days_ored(), e.days_ored(), "{text:?}");
                assert_eq!(again.is_wildcard(), e.is_wildcard(), "{text:?}");
            }
            Err(err) => {
                let chars = text.chars().count();
                assert!(
                    err.start <= err.end && err.end <= chars.max(1),
                    "{text:?}: {err:?}"
                );
            }
        }
    }
}
