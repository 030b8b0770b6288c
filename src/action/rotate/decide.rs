//! The retention decision for each snapshot, with every rule that keeps
//! it (as restic's `forget` lists its reasons) and, for a snapshot to be
//! deleted, what each rule said of it: a retention that surprises is
//! usually a rule that counts differently than its reader thought
//! (`keep_daily: 7` is the newest snapshot of each of the 7 newest *days
//! that have one*, not of the last 7 calendar days).

use std::collections::HashMap;
use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use serde::{Serialize, Serializer};

use super::RotateParams;
use crate::fs::snapshots::{Listing, Snapshot};
use crate::model::Duration;

/// A rule that keeps one snapshot per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Period {
    /// `keep_daily`: per day.
    #[serde(rename = "keep_daily")]
    Daily,
    /// `keep_weekly`: per ISO week.
    #[serde(rename = "keep_weekly")]
    Weekly,
    /// `keep_monthly`: per month.
    #[serde(rename = "keep_monthly")]
    Monthly,
}

impl Period {
    /// The parameter's name.
    pub fn key(self) -> &'static str {
        match self {
            Period::Daily => "keep_daily",
            Period::Weekly => "keep_weekly",
            Period::Monthly => "keep_monthly",
        }
    }

    /// The period `t` falls in, as people write it: `2026-11-05`,
    /// `2026-W45` (ISO week), `2026-11`.
    pub fn label(self, t: &NaiveDateTime) -> String {
        match self {
            Period::Daily => t.date().format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => format!("{:04}-{:02}", t.year(), t.month()),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Period::Daily => "days",
            Period::Weekly => "weeks",
            Period::Monthly => "months",
        }
    }
}

/// Why a snapshot is kept. A snapshot lists every reason that applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// One of the `n` newest counted snapshots, the `rank`-th (1 = newest).
    KeepLast {
        /// `keep_last`.
        n: u32,
        /// Its place, newest first.
        rank: u32,
    },
    /// The newest counted snapshot of `day`, one of the `n` newest days
    /// that have one.
    KeepDaily {
        /// `keep_daily`.
        n: u32,
        /// Its day.
        #[serde(serialize_with = "as_text")]
        day: NaiveDate,
    },
    /// The newest counted snapshot of ISO week `week` (`2026-W45`), one
    /// of the `n` newest weeks that have one.
    KeepWeekly {
        /// `keep_weekly`.
        n: u32,
        /// Its ISO week.
        week: String,
    },
    /// The newest counted snapshot of `month` (`2026-11`), one of the `n`
    /// newest months that have one.
    KeepMonthly {
        /// `keep_monthly`.
        n: u32,
        /// Its month.
        month: String,
    },
    /// Younger than `keep_within`.
    KeepWithin {
        /// `keep_within`.
        #[serde(serialize_with = "as_text")]
        within: Duration,
        /// Its age at the time of the run (to the minute).
        #[serde(serialize_with = "as_text")]
        age: Duration,
    },
    /// The target of the `latest` link, never deleted.
    Latest {
        /// The link's name.
        link: String,
    },
    /// Kept so that `min_keep` counted snapshots remain.
    MinKeep {
        /// `min_keep`.
        n: u32,
    },
    /// The base of an incremental snapshot that stays: the incremental
    /// one holds only what changed since it.
    BaseOf {
        /// The incremental snapshot.
        incremental: String,
    },
    /// Not counted and never deleted: it has no manifest (unfinished).
    Incomplete,
    /// Not counted and never deleted: no `verify` has passed on it.
    Unverified,
    /// Not counted and never deleted: its last `verify` found problems
    /// (`ward verify --status` shows them).
    VerifyFailed,
}

fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::KeepLast { n, rank } => write!(f, "keep_last {n} (#{rank})"),
            Reason::KeepDaily { n, day } => write!(f, "keep_daily {n} ({day})"),
            Reason::KeepWeekly { n, week } => write!(f, "keep_weekly {n} ({week})"),
            Reason::KeepMonthly { n, month } => write!(f, "keep_monthly {n} ({month})"),
            Reason::KeepWithin { within, age } => write!(f, "keep_within {within} (age {age})"),
            Reason::Latest { link } => write!(f, "target of `{link}`"),
            Reason::MinKeep { n } => write!(f, "min_keep {n}"),
            Reason::BaseOf { incremental } => write!(f, "base of incremental {incremental}"),
            Reason::Incomplete => f.write_str("not counted: incomplete (no manifest)"),
            Reason::Unverified => f.write_str("not counted: not verified"),
            Reason::VerifyFailed => f.write_str("not counted: its last verify failed"),
        }
    }
}

/// What a rule said of a snapshot it does not keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule_missed", rename_all = "snake_case")]
pub enum Miss {
    /// Not among the `n` newest: it is the `rank`-th.
    NotInLast {
        /// `keep_last`.
        n: u32,
        /// Its place, newest first.
        rank: u32,
    },
    /// Its period is kept, by a newer snapshot of the same period.
    NewerInPeriod {
        /// The rule.
        rule: Period,
        /// Its period.
        period: String,
        /// The snapshot the rule keeps for it.
        kept: String,
    },
    /// Its period is older than the `n` newest periods with a snapshot.
    PeriodTooOld {
        /// The rule.
        rule: Period,
        /// The rule's count.
        n: u32,
        /// Its period.
        period: String,
    },
    /// Older than `keep_within`.
    OutsideWithin {
        /// `keep_within`.
        #[serde(serialize_with = "as_text")]
        within: Duration,
        /// Its age.
        #[serde(serialize_with = "as_text")]
        age: Duration,
    },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::NotInLast { n, rank } => write!(f, "keep_last {n}: it is #{rank}"),
            Miss::NewerInPeriod { rule, period, kept } => {
                write!(f, "{} keeps {kept} for {period}", rule.key())
            }
            Miss::PeriodTooOld { rule, n, period } => write!(
                f,
                "{} {n}: {period} is older than the {n} newest {} with a snapshot",
                rule.key(),
                rule.what()
            ),
            Miss::OutsideWithin { within, age } => {
                write!(f, "keep_within {within}: it is {age} old")
            }
        }
    }
}

/// What happens to a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Counted and kept.
    Keep,
    /// Counted and deleted: no rule keeps it.
    Delete,
    /// Incomplete or unverified: not counted, kept.
    NotCounted,
}

impl Decision {
    /// The word in tables.
    pub fn word(self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Delete => "delete",
            Decision::NotCounted => "keep*",
        }
    }
}

/// One snapshot's decision and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judged {
    /// Folder name.
    pub name: String,
    /// When it was taken.
    #[serde(serialize_with = "as_text")]
    pub time: NaiveDateTime,
    /// Keep, delete or not counted.
    pub decision: Decision,
    /// Every reason it is kept (empty for a deletion).
    pub reasons: Vec<Reason>,
    /// For a deletion: what each rule said of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub misses: Vec<Miss>,
}

impl Judged {
    /// The reasons (kept) or what the rules said (deleted), in one line.
    pub fn why(&self) -> String {
        let list = |items: Vec<String>| items.join("; ");
        match self.decision {
            Decision::Delete if self.misses.is_empty() => "no rule keeps it".to_owned(),
            Decision::Delete => format!(
                "no rule keeps it: {}",
                list(self.misses.iter().map(ToString::to_string).collect())
            ),
            _ => list(self.reasons.iter().map(ToString::to_string).collect()),
        }
    }
}

/// The outcome of a retention policy over a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Verified snapshots kept, newest first.
    pub keep: Vec<String>,
    /// Verified snapshots to delete, oldest first.
    pub delete: Vec<String>,
    /// Incomplete or unverified snapshots, never counted, never deleted.
    pub not_counted: Vec<String>,
    /// Every snapshot, newest first, with its decision and why.
    pub snapshots: Vec<Judged>,
}

/// Age to the minute, as a duration (`2d3h`); a snapshot from the future
/// (a clock set back) is of age 0.
fn age(now: NaiveDateTime, t: NaiveDateTime) -> Duration {
    let secs = now.signed_duration_since(t).num_seconds().max(0) as u64;
    Duration(std::time::Duration::from_secs(secs / 60 * 60))
}

/// Applies the policy: only complete, verified snapshots count; the
/// `latest` target is always kept; at least `min_keep` remain; the base
/// of an incremental snapshot that stays stays.
pub fn select(p: &RotateParams, listing: &Listing, now: NaiveDateTime) -> Selection {
    let mut all: Vec<&Snapshot> = listing.snapshots.iter().collect();
    // Newest first.
    all.sort_by(|a, b| b.age_order().cmp(&a.age_order()));
    let counts = |s: &Snapshot| s.complete && s.verified;
    let counted: Vec<&Snapshot> = all.iter().copied().filter(|s| counts(s)).collect();
    let mut reasons: HashMap<&str, Vec<Reason>> = HashMap::new();
    let mut misses: HashMap<&str, Vec<Miss>> = HashMap::new();
    if let Some(n) = p.keep_last {
        for (i, s) in counted.iter().enumerate() {
            let rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if rank <= n {
                reasons
                    .entry(&s.name)
                    .or_default()
                    .push(Reason::KeepLast { n, rank });
            } else {
                misses
                    .entry(&s.name)
                    .or_default()
                    .push(Miss::NotInLast { n, rank });
            }
        }
    }
    for (period, n) in [
        (Period::Daily, p.keep_daily),
        (Period::Weekly, p.keep_weekly),
        (Period::Monthly, p.keep_monthly),
    ] {
        let Some(n) = n else { continue };
        // Each period's newest snapshot, for the `n` newest periods.
        let mut kept: HashMap<String, &str> = HashMap::new();
        for s in &counted {
            let label = period.label(&s.time);
            if let Some(by) = kept.get(&label) {
                misses
                    .entry(&s.name)
                    .or_default()
                    .push(Miss::NewerInPeriod {
                        rule: period,
                        period: label,
                        kept: (*by).to_owned(),
                    });
            } else if kept.len() < n as usize {
                let reason = match period {
                    Period::Daily => Reason::KeepDaily {
                        n,
                        day: s.time.date(),
                    },
                    Period::Weekly => Reason::KeepWeekly {
                        n,
                        week: label.clone(),
                    },
                    Period::Monthly => Reason::KeepMonthly {
                        n,
                        month: label.clone(),
                    },
                };
                reasons.entry(&s.name).or_default().push(reason);
                kept.insert(label, &s.name);
            } else {
                misses.entry(&s.name).or_default().push(Miss::PeriodTooOld {
                    rule: period,
                    n,
                    period: label,
                });
            }
        }
    }
    if let Some(within) = p.keep_within {
        let limit = chrono::Duration::from_std(within.std()).unwrap_or(chrono::Duration::MAX);
        for s in &counted {
            let age = age(now, s.time);
            if now.signed_duration_since(s.time) < limit {
                reasons
                    .entry(&s.name)
                    .or_default()
                    .push(Reason::KeepWithin { within, age });
            } else {
                misses
                    .entry(&s.name)
                    .or_default()
                    .push(Miss::OutsideWithin { within, age });
            }
        }
    }
    if let Some(target) = &listing.latest_target
        && let Some(s) = all.iter().find(|s| &s.name == target)
    {
        reasons.entry(&s.name).or_default().push(Reason::Latest {
            link: p.latest.clone(),
        });
    }
    let is_kept = |reasons: &HashMap<&str, Vec<Reason>>, s: &Snapshot| {
        reasons.get(s.name.as_str()).is_some_and(|r| !r.is_empty())
    };
    let mut kept = counted.iter().filter(|s| is_kept(&reasons, s)).count();
    for s in &counted {
        if kept >= p.min_keep as usize {
            break;
        }
        if !is_kept(&reasons, s) {
            reasons
                .entry(&s.name)
                .or_default()
                .push(Reason::MinKeep { n: p.min_keep });
            kept += 1;
        }
    }
    // An incremental snapshot is only whole with its base. Bases are full
    // snapshots (`snapshot.hardlink` never bases on an incremental one),
    // so one pass finds them all.
    let needed: Vec<(&str, &str)> = all
        .iter()
        .filter(|s| is_kept(&reasons, s) || !counts(s))
        .filter_map(|s| s.base.as_deref().map(|b| (s.name.as_str(), b)))
        .collect();
    for (incremental, base) in needed {
        if let Some(s) = all.iter().find(|s| s.name == base) {
            reasons.entry(&s.name).or_default().push(Reason::BaseOf {
                incremental: incremental.to_owned(),
            });
        }
    }
    let mut sel = Selection::default();
    for s in &all {
        let mut why = reasons.remove(s.name.as_str()).unwrap_or_default();
        let decision = if !counts(s) {
            // First, so that a table reads why it does not count.
            why.insert(
                0,
                if s.complete && s.verify_failed {
                    Reason::VerifyFailed
                } else if s.complete {
                    Reason::Unverified
                } else {
                    Reason::Incomplete
                },
            );
            sel.not_counted.push(s.name.clone());
            Decision::NotCounted
        } else if why.is_empty() {
            sel.delete.push(s.name.clone());
            Decision::Delete
        } else {
            sel.keep.push(s.name.clone());
            Decision::Keep
        };
        sel.snapshots.push(Judged {
            name: s.name.clone(),
            time: s.time,
            decision,
            reasons: why,
            misses: if decision == Decision::Delete {
                misses.remove(s.name.as_str()).unwrap_or_default()
            } else {
                Vec::new()
            },
        });
    }
    sel.delete.reverse();
    sel.not_counted.sort();
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::snapshots::{list, time_from_name};
    use chrono::Timelike;
    use std::collections::HashSet;

    fn params() -> RotateParams {
        RotateParams {
            dir: "x".into(),
            keep_last: None,
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(6),
            keep_within: None,
            min_keep: 3,
            latest: "latest".into(),
            count_freed: true,
        }
    }

    fn snap(day: NaiveDate, verified: bool) -> Snapshot {
        Snapshot {
            name: day.format("%Y-%m-%d").to_string(),
            time: day.and_hms_opt(2, 0, 0).expect("time"),
            complete: true,
            verified,
            verify_failed: false,
            base: None,
        }
    }

    fn judged<'a>(sel: &'a Selection, name: &str) -> &'a Judged {
        sel.snapshots
            .iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the selection"))
    }

    #[test]
    fn four_hundred_days_with_failures_never_drop_below_min_keep() {
        let p = params();
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let mut listing = Listing::default();
        for day in 0..400u64 {
            let date = start + chrono::Days::new(day);
            // Every 5th night the backup fails verification; every 11th it never completes.
            let verified = day % 5 != 0;
            let complete = day % 11 != 0;
            let mut s = snap(date, verified);
            s.complete = complete;
            listing.snapshots.push(s.clone());
            if complete && verified {
                listing.latest_target = Some(s.name.clone());
            }
            let sel = select(&p, &listing, date.and_hms_opt(3, 0, 0).expect("t"));
            let counted = listing
                .snapshots
                .iter()
                .filter(|s| s.complete && s.verified)
                .count();
            assert!(
                sel.keep.len() >= counted.min(3),
                "day {day}: kept {}",
                sel.keep.len()
            );
            if let Some(t) = &listing.latest_target {
                assert!(!sel.delete.contains(t), "day {day}: would delete latest");
            }
            for d in &sel.delete {
                let s = listing
                    .snapshots
                    .iter()
                    .find(|s| &s.name == d)
                    .expect("known");
                assert!(
                    s.complete && s.verified,
                    "only verified snapshots are deleted"
                );
            }
            // Every snapshot is judged once; the lists agree with the judgements.
            assert_eq!(sel.snapshots.len(), listing.snapshots.len(), "day {day}");
            for j in &sel.snapshots {
                let listed = match j.decision {
                    Decision::Keep => &sel.keep,
                    Decision::Delete => &sel.delete,
                    Decision::NotCounted => &sel.not_counted,
                };
                assert!(listed.contains(&j.name), "day {day}: {j:?}");
                assert_eq!(
                    j.reasons.is_empty(),
                    j.decision == Decision::Delete,
                    "day {day}: a kept snapshot says why, a deleted one has no reason: {j:?}"
                );
            }
            let doomed: HashSet<String> = sel.delete.iter().cloned().collect();
            listing.snapshots.retain(|s| !doomed.contains(&s.name));
        }
        let left: Vec<&Snapshot> = listing
            .snapshots
            .iter()
            .filter(|s| s.complete && s.verified)
            .collect();
        // 7 daily + up to 4 weekly + up to 6 monthly, overlapping.
        assert!(left.len() >= 7 && left.len() <= 17, "{}", left.len());
        // Unverified or incomplete snapshots are never deleted.
        assert_eq!(
            listing
                .snapshots
                .iter()
                .filter(|s| !s.verified || !s.complete)
                .count(),
            80 + 37 - 8
        );
    }

    /// 60 nightly snapshots (2026-01-01 .. 2026-03-01, verified except
    /// 02-25, 02-28 incomplete), two on 02-27, rotated on 2026-03-01 at
    /// 03:00 with keep_last 2, keep_daily 5, keep_weekly 3, keep_monthly 3,
    /// keep_within 36h: each snapshot's decision and every reason.
    #[test]
    fn every_snapshot_gets_each_rule_that_keeps_it_over_two_months() {
        let p = RotateParams {
            keep_last: Some(2),
            keep_daily: Some(5),
            keep_weekly: Some(3),
            keep_monthly: Some(3),
            keep_within: Some(Duration::parse("36h").expect("duration")),
            min_keep: 1,
            ..params()
        };
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let mut listing = Listing::default();
        for day in 0..60u64 {
            let date = start + chrono::Days::new(day);
            let mut s = snap(date, true);
            if date == NaiveDate::from_ymd_opt(2026, 2, 25).expect("d") {
                s.verified = false;
            }
            if date == NaiveDate::from_ymd_opt(2026, 2, 28).expect("d") {
                s.complete = false;
                s.verified = false;
            }
            listing.snapshots.push(s);
        }
        // A second run on 02-27, later that night.
        listing.snapshots.push(Snapshot {
            name: "2026-02-27.2".into(),
            time: NaiveDate::from_ymd_opt(2026, 2, 27)
                .and_then(|d| d.and_hms_opt(2, 0, 0))
                .expect("t"),
            complete: true,
            verified: true,
            verify_failed: false,
            base: None,
        });
        // `latest` points at an old one (a restore test left it there).
        listing.latest_target = Some("2026-01-10".into());
        let now = NaiveDate::from_ymd_opt(2026, 3, 1)
            .and_then(|d| d.and_hms_opt(3, 0, 0))
            .expect("now");
        let sel = select(&p, &listing, now);
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        let within = |h: u64| Reason::KeepWithin {
            within: Duration::parse("36h").expect("d"),
            age: Duration(std::time::Duration::from_secs(h * 3600)),
        };
        // 03-01 is Sunday of ISO week 9; 02-23 Monday.
        assert_eq!(
            judged(&sel, "2026-03-01").reasons,
            [
                Reason::KeepLast { n: 2, rank: 1 },
                Reason::KeepDaily {
                    n: 5,
                    day: day("2026-03-01")
                },
                Reason::KeepWeekly {
                    n: 3,
                    week: "2026-W09".into()
                },
                Reason::KeepMonthly {
                    n: 3,
                    month: "2026-03".into()
                },
                within(1),
            ]
        );
        // 02-28 is incomplete: not counted, so 02-27.2 is second.
        assert_eq!(judged(&sel, "2026-02-28").decision, Decision::NotCounted);
        assert_eq!(judged(&sel, "2026-02-28").reasons, [Reason::Incomplete]);
        assert_eq!(
            judged(&sel, "2026-02-27.2").reasons,
            [
                Reason::KeepLast { n: 2, rank: 2 },
                Reason::KeepDaily {
                    n: 5,
                    day: day("2026-02-27")
                },
                Reason::KeepMonthly {
                    n: 3,
                    month: "2026-02".into()
                },
            ]
        );
        // 02-27 (the first run) lost its day to the second run.
        let first = judged(&sel, "2026-02-27");
        assert_eq!(first.decision, Decision::Delete);
        assert!(first.misses.contains(&Miss::NewerInPeriod {
            rule: Period::Daily,
            period: "2026-02-27".into(),
            kept: "2026-02-27.2".into()
        }));
        assert_eq!(
            first.why().matches("keep_daily keeps 2026-02-27.2").count(),
            1
        );
        // Days: 03-01, 02-27, 02-26, (02-25 unverified, 02-28 incomplete) 02-24, 02-23.
        assert_eq!(
            judged(&sel, "2026-02-23").reasons,
            [Reason::KeepDaily {
                n: 5,
                day: day("2026-02-23")
            }]
        );
        assert_eq!(judged(&sel, "2026-02-25").reasons, [Reason::Unverified]);
        let past = judged(&sel, "2026-02-22");
        // Sunday of week 8: the newest of its week, the second of three weeks.
        assert_eq!(
            past.reasons,
            [Reason::KeepWeekly {
                n: 3,
                week: "2026-W08".into()
            }]
        );
        assert_eq!(
            judged(&sel, "2026-02-15").reasons,
            [Reason::KeepWeekly {
                n: 3,
                week: "2026-W07".into()
            }]
        );
        assert_eq!(
            judged(&sel, "2026-01-31").reasons,
            [Reason::KeepMonthly {
                n: 3,
                month: "2026-01".into()
            }]
        );
        assert_eq!(
            judged(&sel, "2026-01-10").reasons,
            [Reason::Latest {
                link: "latest".into()
            }]
        );
        let old = judged(&sel, "2026-01-09");
        assert_eq!(old.decision, Decision::Delete);
        assert_eq!(
            old.misses,
            [
                Miss::NotInLast { n: 2, rank: 51 },
                Miss::PeriodTooOld {
                    rule: Period::Daily,
                    n: 5,
                    period: "2026-01-09".into()
                },
                Miss::PeriodTooOld {
                    rule: Period::Weekly,
                    n: 3,
                    period: "2026-W02".into()
                },
                Miss::NewerInPeriod {
                    rule: Period::Monthly,
                    period: "2026-01".into(),
                    kept: "2026-01-31".into()
                },
                Miss::OutsideWithin {
                    within: Duration::parse("36h").expect("d"),
                    age: Duration(std::time::Duration::from_secs((51 * 24 + 1) * 3600)),
                },
            ]
        );
        assert_eq!(
            old.why(),
            "no rule keeps it: keep_last 2: it is #51; keep_daily 5: 2026-01-09 is older than \
             the 5 newest days with a snapshot; keep_weekly 3: 2026-W02 is older than the 3 \
             newest weeks with a snapshot; keep_monthly keeps 2026-01-31 for 2026-01; \
             keep_within 1d12h: it is 51d1h old"
        );
        let kept: Vec<&str> = sel.keep.iter().map(String::as_str).collect();
        assert_eq!(
            kept,
            [
                "2026-03-01",
                "2026-02-27.2",
                "2026-02-26",
                "2026-02-24",
                "2026-02-23",
                "2026-02-22",
                "2026-02-15",
                "2026-01-31",
                "2026-01-10"
            ]
        );
        assert_eq!(sel.not_counted, ["2026-02-25", "2026-02-28"]);
        assert_eq!(sel.delete.len(), 61 - 9 - 2);
        assert_eq!(sel.delete.first().map(String::as_str), Some("2026-01-01"));
    }

    #[test]
    fn min_keep_and_an_incremental_base_say_so() {
        let p = RotateParams {
            keep_last: Some(1),
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            min_keep: 2,
            ..params()
        };
        let d = |n| NaiveDate::from_ymd_opt(2026, 1, n).expect("date");
        let mut inc = snap(d(4), true);
        inc.base = Some("2026-01-01".into());
        let mut unverified_inc = snap(d(5), false);
        unverified_inc.base = Some("2026-01-02".into());
        let listing = Listing {
            snapshots: vec![
                snap(d(1), true),
                snap(d(2), true),
                snap(d(3), true),
                inc,
                unverified_inc,
            ],
            latest_target: Some("2026-01-04".into()),
            deleting: vec![],
        };
        let sel = select(&p, &listing, d(5).and_hms_opt(5, 0, 0).expect("t"));
        assert_eq!(
            judged(&sel, "2026-01-04").reasons,
            [
                Reason::KeepLast { n: 1, rank: 1 },
                Reason::Latest {
                    link: "latest".into()
                }
            ]
        );
        assert_eq!(
            judged(&sel, "2026-01-03").reasons,
            [Reason::MinKeep { n: 2 }]
        );
        assert_eq!(
            judged(&sel, "2026-01-01").reasons,
            [Reason::BaseOf {
                incremental: "2026-01-04".into()
            }]
        );
        // An unverified incremental snapshot is kept, so is its base.
        assert_eq!(
            judged(&sel, "2026-01-02").reasons,
            [Reason::BaseOf {
                incremental: "2026-01-05".into()
            }]
        );
        assert!(sel.delete.is_empty(), "{:?}", sel.delete);
        let json = serde_json::to_value(&sel.snapshots).expect("json");
        assert_eq!(json[0]["decision"], "not_counted", "{json}");
        assert_eq!(json[0]["reasons"][0]["rule"], "unverified", "{json}");
        assert_eq!(json[1]["reasons"][0]["rule"], "keep_last", "{json}");
        assert_eq!(json[1]["time"], "2026-01-04 02:00:00", "{json}");
    }

    #[test]
    fn a_base_marker_that_cannot_be_read_is_an_error() {
        // Read as "no base", rotate could delete the base an incremental
        // snapshot needs.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("2026-01-02")).expect("snapshot");
        std::fs::create_dir(dir.path().join(".2026-01-02.base")).expect("a folder, not a file");
        let err = list(dir.path(), "latest").expect_err("must not list");
        assert!(err.to_string().contains(".2026-01-02.base"), "{err}");
    }

    #[test]
    fn keeps_latest_target_even_when_old() {
        let mut p = params();
        p.keep_daily = Some(1);
        p.keep_weekly = None;
        p.keep_monthly = None;
        p.min_keep = 1;
        let d = |n| NaiveDate::from_ymd_opt(2026, 1, n).expect("date");
        let listing = Listing {
            snapshots: vec![snap(d(1), true), snap(d(2), true), snap(d(3), true)],
            latest_target: Some("2026-01-01".into()),
            deleting: vec![],
        };
        let sel = select(&p, &listing, d(3).and_hms_opt(5, 0, 0).expect("t"));
        assert_eq!(sel.keep, ["2026-01-03", "2026-01-01"]);
        assert_eq!(sel.delete, ["2026-01-02"]);
    }

    #[test]
    fn names_give_times() {
        assert_eq!(time_from_name("2026-11-23").map(|t| t.hour()), Some(0));
        assert_eq!(
            time_from_name("2026-11-23T02:30:00").map(|t| t.minute()),
            Some(30)
        );
        assert!(time_from_name("weekly").is_none());
    }
}
