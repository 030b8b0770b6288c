//! Schedules: a crontab time expression in a time zone, and when it fires.
//!
//! At the bottom of the crate with `model` (it imports nothing of ward's
//! but its own files): validate parses `schedule:` and `timezone:` with it,
//! and the commands (`ward next`, `ward cron`, `ward systemd`) and later
//! the catch-up (`--if-due`, missed slots) ask it for fire times.
//!
//! - [`CronExpr`] (`expr.rs`): the five fields, crontab's syntax and meaning;
//! - `fire.rs`: fire times in a zone with cron's daylight-saving rules;
//! - [`Zone`]: an IANA zone from the system's tz database (jiff), or the
//!   system's own zone;
//! - [`Schedule`]: both, with the questions later slices ask: the next fire
//!   after an instant, the last at or before one, every fire in `(a, b]`.

mod civil;
mod expr;
mod fire;
pub mod systemd;

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

pub use expr::{CronExpr, ExprError, Field};

/// A time zone with the name ward shows for it.
#[derive(Clone, Debug)]
pub struct Zone {
    tz: TimeZone,
    name: String,
    explicit: bool,
}

/// `timezone:` names no zone in the system's tz database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone `{name}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
pub struct UnknownZone {
    /// The name as written.
    pub name: String,
    /// The closest zone name the database has, if one is close.
    pub suggestion: Option<String>,
}

impl Zone {
    /// The zone named `name` (`Europe/Berlin`, `UTC`) in the system's tz
    /// database (/usr/share/zoneinfo).
    pub fn named(name: &str) -> Result<Zone, UnknownZone> {
        match TimeZone::get(name) {
            Ok(tz) => Ok(Zone {
                name: tz.iana_name().unwrap_or(name).to_owned(),
                tz,
                explicit: true,
            }),
            Err(_) => {
                let lower = name.to_ascii_lowercase();
                let suggestion = jiff::tz::db()
                    .available()
                    .map(|n| n.as_str().to_owned())
                    .map(|n| (strsim::jaro_winkler(&lower, &n.to_ascii_lowercase()), n))
                    .filter(|(score, _)| *score >= 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, n)| n);
                Err(UnknownZone {
                    name: name.to_owned(),
                    suggestion,
                })
            }
        }
    }

    /// The system's zone: `TZ` if set, else /etc/localtime (as the C
    /// library reads it, so as cron's jobs see it).
    pub fn system() -> Zone {
        let tz = TimeZone::system();
        let name = tz.iana_name().unwrap_or("local time").to_owned();
        Zone {
            tz,
            name,
            explicit: false,
        }
    }

    /// The zone cron reads crontab lines in: /etc/localtime, whatever `TZ`
    /// says in this shell (the daemon does not see it). Without the file,
    /// UTC, as the C library does.
    pub fn of_cron_daemon() -> Zone {
        let path = std::path::Path::new("/etc/localtime");
        let named = std::fs::read_link(path).ok().and_then(|target| {
            let target = target.to_string_lossy().into_owned();
            let (_, name) = target.split_once("zoneinfo/")?;
            Zone::named(name).ok()
        });
        named.unwrap_or_else(|| {
            let tz = std::fs::read(path)
                .ok()
                .and_then(|data| TimeZone::tzif("/etc/localtime", &data).ok())
                .unwrap_or(TimeZone::UTC);
            Zone {
                name: tz.iana_name().unwrap_or("/etc/localtime").to_owned(),
                tz,
                explicit: false,
            }
        })
    }

    /// The zone's name (IANA where known).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the playbook named it (`timezone:`); false for the system's.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// True when both zones have the same offsets from `from` on, over
    /// the next 30 years (`UTC` and `Etc/UTC`, or a zone and its alias).
    pub fn same_rules_as(&self, other: &Zone, from: Timestamp) -> bool {
        let changes = |tz: &TimeZone| -> Vec<(i64, i32)> {
            let until = from.as_second() + 30 * 366 * 86_400;
            tz.following(from)
                .map(|t| (t.timestamp().as_second(), t.offset().seconds()))
                .take_while(|(at, _)| *at <= until)
                .filter({
                    let mut last = tz.to_offset(from).seconds();
                    move |(_, off)| std::mem::replace(&mut last, *off) != *off
                })
                .collect()
        };
        self.tz.to_offset(from) == other.tz.to_offset(from)
            && changes(&self.tz) == changes(&other.tz)
    }

    /// The jiff zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

/// One moment a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// When it fires.
    pub at: ZonedDateTime,
    /// The local wall-clock time the crontab line names. It differs from
    /// `at`'s local time only when a daylight-saving gap skipped it (the
    /// 02:30 slot fires at 03:00).
    pub slot: DateTime,
}

impl Fire {
    /// True when the fire was moved by a clock change (see [`Fire::slot`]).
    pub fn moved(&self) -> bool {
        self.at.datetime() != self.slot
    }
}

/// A crontab expression in a zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: CronExpr,
    zone: Zone,
}

impl Schedule {
    /// `expr` read in `zone`.
    pub fn new(expr: CronExpr, zone: Zone) -> Schedule {
        Schedule { expr, zone }
    }

    /// The expression.
    pub fn expr(&self) -> &CronExpr {
        &self.expr
    }

    /// The zone.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    fn fire(&self, raw: fire::RawFire) -> Option<Fire> {
        let at = Timestamp::from_second(raw.at).ok()?;
        let slot_ts = Timestamp::from_second(raw.slot).ok()?;
        Some(Fire {
            at: at.to_zoned_datetime(self.zone.tz.clone()),
            slot: slot_ts.to_zoned_datetime(TimeZone::UTC).datetime(),
        })
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Fire> {
        let from = t.as_second().checked_add(1)?;
        fire::next_at_or_after(&self.expr, &self.zone.tz, from).and_then(|r| self.fire(r))
    }

    /// The last fire at or before `t` (a fire exactly at `t` counts): the
    /// slot a run at `t` belongs to.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Fire> {
        // Fires are on whole seconds; a fraction past one still counts.
        fire::last_at_or_before(&self.expr, &self.zone.tz, t.as_second()).and_then(|r| self.fire(r))
    }

    /// The last fire strictly before `t`.
    pub fn previous_before(&self, t: Timestamp) -> Option<Fire> {
        let whole = t.as_second();
        let to = if t.subsec_nanosecond() > 0 {
            whole
        } else {
            whole.checked_sub(1)?
        };
        fire::last_at_or_before(&self.expr, &self.zone.tz, to).and_then(|r| self.fire(r))
    }

    /// Every fire in `(after, until]`, in order: the slots a machine that
    /// was off from `after` to `until` missed.
    pub fn fires_between(&self, after: Timestamp, until: Timestamp) -> FiresBetween<'_> {
        FiresBetween {
            schedule: self,
            cur: after,
            until,
        }
    }

    /// The next `n` fires after `t`.
    pub fn upcoming(&self, t: Timestamp, n: usize) -> Vec<Fire> {
        let mut out = Vec::with_capacity(n);
        let mut cur = t;
        while out.len() < n {
            let Some(f) = self.next_after(cur) else { break };
            cur = f.at.timestamp();
            out.push(f);
        }
        out
    }
}

/// The iterator of [`Schedule::fires_between`].
pub struct FiresBetween<'a> {
    schedule: &'a Schedule,
    cur: Timestamp,
    until: Timestamp,
}

impl Iterator for FiresBetween<'_> {
    type Item = Fire;

    fn next(&mut self) -> Option<Fire> {
        let f = self.schedule.next_after(self.cur)?;
        if f.at.timestamp() > self.until {
            self.cur = self.until;
            return None;
        }
        self.cur = f.at.timestamp();
        Some(f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.zone.name)
    }
}

#[cfg(test)]
mod tests;
