//! A crontab time expression: five fields with crontab's meaning, or one
//! of its `@` macros.
//!
//! What is accepted is what Debian's `cron` and cronie accept in a user's
//! crontab, so that the line ward installs means what `ward next` shows:
//! numbers, three-letter names for months and weekdays (any case), `*`,
//! ranges `a-b`, lists `a,b`, steps on `*` or on a range (`*/15`,
//! `1-10/3`), 0 and 7 for Sunday, and the macros `@yearly` `@annually`
//! `@monthly` `@weekly` `@daily` `@midnight` `@hourly`. A step on a single
//! number (`5/10`), which cron refuses, is refused with what to write.
//!
//! Two flags decide behaviour that is not in the sets of values, as in
//! cron's `entry.c`: a field "starts with `*`" (`*` or `*/n`). The day
//! fields are ORed when neither starts with `*` and ANDed otherwise (so
//! `0 0 */2 * 1` is "every other day of the month that is a Monday"), and
//! a job whose minute or hour field starts with `*` is a wildcard job for
//! the daylight-saving rules (see `fire.rs`).

use std::fmt;

/// One field's place and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// 0-59.
    Minute,
    /// 0-23.
    Hour,
    /// 1-31.
    DayOfMonth,
    /// 1-12 or jan-dec.
    Month,
    /// 0-7 (0 and 7 are Sunday) or sun-sat.
    DayOfWeek,
}

const FIELDS: [Field; 5] = [
    Field::Minute,
    Field::Hour,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The macros and the five fields each stands for.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Field {
    /// The field's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    fn low(self) -> u32 {
        match self {
            Field::Minute | Field::Hour | Field::DayOfWeek => 0,
            Field::DayOfMonth | Field::Month => 1,
        }
    }

    fn high(self) -> u32 {
        match self {
            Field::Minute => 59,
            Field::Hour => 23,
            Field::DayOfMonth => 31,
            Field::Month => 12,
            Field::DayOfWeek => 7,
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &WEEKDAYS,
            _ => &[],
        }
    }

    /// What the field takes, for help lines.
    fn takes(self) -> String {
        let names = self.names();
        if names.is_empty() {
            format!("{}-{}", self.low(), self.high())
        } else {
            format!(
                "{}-{} or {}-{}",
                self.low(),
                self.high(),
                names[0],
                names[names.len() - 1]
            )
        }
    }
}

/// A refused expression: what is wrong, what to write, and where, in
/// characters from the start of the expression (`end` exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
    /// First character of the offending text.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A parsed crontab time expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronExpr {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Starts with `*`, per field (cron's MIN_STAR, HR_STAR, DOM_STAR, DOW_STAR; month unused).
    star: [bool; 5],
    /// The five fields as crontab reads them, names written as numbers.
    fields: [String; 5],
    /// The expression as written (trimmed).
    written: String,
}

impl CronExpr {
    /// Parses a crontab time expression.
    ///
    /// ```
    /// use ward::schedule::CronExpr;
    /// assert!(CronExpr::parse("30 2 * * mon-fri").is_ok());
    /// let e = CronExpr::parse("0 30 2 * * *").unwrap_err();
    /// assert!(e.message.contains("5 time fields"));
    /// ```
    pub fn parse(text: &str) -> Result<CronExpr, ExprError> {
        let tokens = tokens(text);
        let written = tokens
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let Some((start, first)) = tokens.first() else {
            return Err(ExprError {
                message: "empty schedule".into(),
                help: Some("write a crontab time such as `30 2 * * *` or `@daily`".into()),
                start: 0,
                end: text.chars().count(),
            });
        };
        if first.starts_with('@') {
            let end = start + first.chars().count();
            let lower = first.to_ascii_lowercase();
            if lower == "@reboot" {
                return Err(ExprError {
                    message: "`@reboot` is not a time: ward schedules by the clock".into(),
                    help: Some(
                        "start ward from a boot unit instead, or use a time such as `@daily`"
                            .into(),
                    ),
                    start: *start,
                    end,
                });
            }
            let Some((_, fields)) = MACROS.iter().find(|(m, _)| *m == first) else {
                let known: Vec<&str> = MACROS.iter().map(|(m, _)| *m).collect();
                return Err(ExprError {
                    message: format!("unknown schedule macro `{first}`"),
                    help: Some(format!("crontab knows {}", known.join(", "))),
                    start: *start,
                    end,
                });
            };
            if let Some((extra, t)) = tokens.get(1) {
                return Err(ExprError {
                    message: format!("`{first}` stands alone; `{t}` after it is not allowed"),
                    help: Some(format!("write `{first}`, or five fields without it")),
                    start: *extra,
                    end: text.chars().count(),
                });
            }
            let mut expr = CronExpr::parse(fields)?;
            expr.written = first.clone();
            return Ok(expr);
        }
        if tokens.len() != 5 {
            let (at, end) = if tokens.len() > 5 {
                (tokens[5].0, text.chars().count())
            } else {
                (0, text.chars().count())
            };
            let help = if tokens.len() > 5 {
                "ward schedules to the minute: drop a seconds field (first) or a year field (last)"
            } else {
                "write minute hour day-of-month month day-of-week, e.g. `30 2 * * *`"
            };
            return Err(ExprError {
                message: format!(
                    "a crontab line has 5 time fields (minute hour day-of-month month \
                     day-of-week); this has {}",
                    tokens.len()
                ),
                help: Some(help.into()),
                start: at,
                end,
            });
        }
        let mut sets = [0u64; 5];
        let mut star = [false; 5];
        let mut fields: [String; 5] = Default::default();
        for (i, ((start, token), field)) in tokens.iter().zip(FIELDS).enumerate() {
            star[i] = token.starts_with('*');
            let (set, canonical) = parse_field(token, *start, field)?;
            sets[i] = set;
            fields[i] = canonical;
        }
        // 7 is Sunday, as is 0.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] | 1) & 0x7f;
        }
        let expr = CronExpr {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: sets[4] as u8,
            star,
            fields,
            written,
        };
        expr.check_some_day(&tokens)?;
        Ok(expr)
    }

    /// Refuses a day-of-month and month that never meet (`0 0 30 2 *`),
    /// where the day of the week cannot help (it is ANDed).
    fn check_some_day(&self, tokens: &[(usize, String)]) -> Result<(), ExprError> {
        if self.days_ored() {
            return Ok(());
        }
        let meets = (1..=12u32).any(|m| {
            self.months & (1 << m) != 0
                && (1..=super::civil::max_days_in_month(m)).any(|d| self.days & (1 << d) != 0)
        });
        if meets {
            return Ok(());
        }
        let (start, token) = &tokens[2];
        Err(ExprError {
            message: format!(
                "this schedule never fires: no month in `{}` has a day `{token}`",
                tokens[3].1
            ),
            help: Some(
                "February has at most 29 days, April, June, September and November 30".into(),
            ),
            start: *start,
            end: start + token.chars().count(),
        })
    }

    /// True when a day matches if either day field does (both restricted:
    /// neither starts with `*`); otherwise both must.
    pub fn days_ored(&self) -> bool {
        !self.star[2] && !self.star[4]
    }

    /// True for a wildcard job in cron's sense: its minute or hour field
    /// starts with `*`. Such jobs follow the wall clock across daylight
    /// saving changes; others (fixed-time jobs) are run once.
    pub fn is_wildcard(&self) -> bool {
        self.star[0] || self.star[1]
    }

    /// The expression as crontab reads it: five fields, names written as
    /// numbers (a macro as its five fields).
    pub fn crontab_fields(&self) -> String {
        self.fields.join(" ")
    }

    /// The expression as written (whitespace collapsed).
    pub fn written(&self) -> &str {
        &self.written
    }

    /// True if the minute `minute` is in the minute field.
    pub fn minute(&self, minute: u32) -> bool {
        minute < 60 && self.minutes & (1 << minute) != 0
    }

    /// True if `hour` is in the hour field.
    pub fn hour(&self, hour: u32) -> bool {
        hour < 24 && self.hours & (1 << hour) != 0
    }

    /// True if `month` (1-12) is in the month field.
    pub fn month(&self, month: u32) -> bool {
        (1..=12).contains(&month) && self.months & (1 << month) != 0
    }

    /// True if the day `day` (1-31) of a month, a `weekday` (0 = Sunday),
    /// matches the day fields (ORed or ANDed as cron does).
    pub fn day(&self, day: u32, weekday: u32) -> bool {
        let dom = (1..=31).contains(&day) && self.days & (1 << day) != 0;
        let dow = weekday < 7 && self.weekdays & (1 << weekday) != 0;
        if self.days_ored() {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The smallest minute >= `from` in the minute field.
    pub(super) fn minute_at_or_after(&self, from: u32) -> Option<u32> {
        (from < 60)
            .then(|| self.minutes >> from)
            .filter(|rest| *rest != 0)
            .map(|rest| from + rest.trailing_zeros())
    }

    /// The largest minute <= `to` in the minute field.
    pub(super) fn minute_at_or_before(&self, to: u32) -> Option<u32> {
        let masked = self.minutes & (u64::MAX >> (63 - to.min(63)));
        (masked != 0).then(|| 63 - masked.leading_zeros())
    }

    /// The values of the minute, hour, day-of-month, month and weekday
    /// fields (weekdays 0-6, Sunday 0), for translations to other schedulers.
    pub fn values(&self) -> [Vec<u32>; 5] {
        let list = |bits: u64, low: u32, high: u32| -> Vec<u32> {
            (low..=high).filter(|v| bits & (1 << v) != 0).collect()
        };
        [
            list(self.minutes, 0, 59),
            list(self.hours.into(), 0, 23),
            list(self.days.into(), 1, 31),
            list(self.months.into(), 1, 12),
            list(self.weekdays.into(), 0, 6),
        ]
    }

    /// True when a field starts with `*` (index 0 = minute .. 4 = day of week).
    pub fn starts_with_star(&self, field: usize) -> bool {
        self.star.get(field).copied().unwrap_or(false)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The whitespace-separated words of `text`, each with the character
/// offset where it starts.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            out.extend(current.take());
        } else {
            current.get_or_insert_with(|| (i, String::new())).1.push(c);
        }
    }
    out.extend(current);
    out
}

/// Parses one field (`token` starting at character `at`) into a bit set
/// and its text with names written as numbers.
fn parse_field(token: &str, at: usize, field: Field) -> Result<(u64, String), ExprError> {
    let chars: Vec<char> = token.chars().collect();
    let mut set = 0u64;
    let mut canonical = String::new();
    let mut pos = 0;
    loop {
        let elem_start = pos;
        while pos < chars.len() && chars[pos] != ',' {
            pos += 1;
        }
        let elem: String = chars[elem_start..pos].iter().collect();
        let (bits, text) = parse_element(&elem, at + elem_start, field)?;
        set |= bits;
        canonical.push_str(&text);
        if pos >= chars.len() {
            break;
        }
        canonical.push(',');
        pos += 1;
    }
    Ok((set, canonical))
}

/// One list element: `*`, `*/n`, `v`, `a-b` or `a-b/n`.
fn parse_element(elem: &str, at: usize, field: Field) -> Result<(u64, String), ExprError> {
    let len = elem.chars().count();
    let whole = |message: String, help: String| ExprError {
        message,
        help: Some(help),
        start: at,
        end: at + len.max(1),
    };
    if elem.is_empty() {
        // Point at the comma next to the missing item.
        return Err(ExprError {
            message: format!("empty item in the {} field", field.name()),
            help: Some("remove the extra `,`".into()),
            start: at.saturating_sub(1),
            end: at.max(1),
        });
    }
    let (range, step) = match elem.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (elem, None),
    };
    let range_len = range.chars().count();
    let (low, high, range_text) = if range == "*" {
        (field.low(), field.high(), "*".to_owned())
    } else if let Some((a, b)) = range.split_once('-') {
        let a_len = a.chars().count();
        if b.is_empty() {
            // Point at the `-` that has no value after it.
            return Err(missing_value(at + a_len, field));
        }
        let lo = value(a, at, field)?;
        let hi = value(b, at + a_len + 1, field)?;
        if lo > hi {
            return Err(ExprError {
                message: format!(
                    "range `{range}` in the {} field runs backwards",
                    field.name()
                ),
                help: Some(if field == Field::DayOfWeek && hi == 0 {
                    format!("write `{lo}-7` (7 is Sunday too)")
                } else {
                    format!("write the smaller value first: `{hi}-{lo}`")
                }),
                start: at,
                end: at + range_len,
            });
        }
        (lo, hi, format!("{lo}-{hi}"))
    } else {
        let v = value(range, at, field)?;
        if step.is_some() {
            return Err(whole(
                format!(
                    "a step needs a range or `*` in crontab: `{elem}` in the {} field",
                    field.name()
                ),
                format!(
                    "write `{v}-{}/{}` (from {v} on) or `*/{}`",
                    field.high(),
                    step.unwrap_or_default(),
                    step.unwrap_or_default()
                ),
            ));
        }
        (v, v, v.to_string())
    };
    let mut text = range_text;
    let step_value = match step {
        None => 1,
        Some(s) => {
            let s_at = at + range_len + 1;
            let span = |message: String| ExprError {
                message,
                help: Some(format!(
                    "a step is a number from 1 to {}, e.g. `*/15`",
                    field.high() - field.low() + 1
                )),
                start: s_at,
                end: s_at + s.chars().count().max(1),
            };
            if s.is_empty() {
                // Point at the `/` that has no step after it.
                return Err(ExprError {
                    start: s_at - 1,
                    end: s_at,
                    ..span(format!(
                        "a step is missing after `/` in the {} field",
                        field.name()
                    ))
                });
            }
            if !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(span(format!(
                    "step `{s}` in the {} field is not a number",
                    field.name()
                )));
            }
            let n: u32 = s.parse().unwrap_or(u32::MAX);
            if n == 0 || n > field.high() - field.low() + 1 {
                return Err(span(format!(
                    "step `{s}` is out of range for the {} field",
                    field.name()
                )));
            }
            text.push('/');
            text.push_str(&n.to_string());
            n
        }
    };
    let mut bits = 0u64;
    let mut v = low;
    while v <= high {
        bits |= 1 << v;
        v += step_value;
    }
    Ok((bits, text))
}

/// A value missing before the `-` or `/` at character `at`, which is where it points.
fn missing_value(at: usize, field: Field) -> ExprError {
    ExprError {
        message: format!("a value is missing in the {} field", field.name()),
        help: Some(format!(
            "the {} field takes {}, `*`, ranges `a-b`, lists `a,b` and steps `*/n`",
            field.name(),
            field.takes()
        )),
        start: at,
        end: at + 1,
    }
}

/// A number or a name in `field`, starting at character `at`.
fn value(text: &str, at: usize, field: Field) -> Result<u32, ExprError> {
    let err = |message: String| ExprError {
        message,
        help: Some(format!(
            "the {} field takes {}, `*`, ranges `a-b`, lists `a,b` and steps `*/n`",
            field.name(),
            field.takes()
        )),
        start: at,
        end: at + text.chars().count().max(1),
    };
    if text.is_empty() {
        return Err(missing_value(at, field));
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        let n: u32 = text.parse().unwrap_or(u32::MAX);
        if n < field.low() || n > field.high() {
            return Err(err(format!(
                "`{text}` is out of range for the {} field ({}-{})",
                field.name(),
                field.low(),
                field.high()
            )));
        }
        return Ok(n);
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names().iter().position(|n| *n == lower) {
        return Ok(i as u32 + field.low());
    }
    let what = match field {
        Field::Month => "a month",
        Field::DayOfWeek => "a day of the week",
        _ => "a number",
    };
    if text.contains(['?', 'L', 'W', '#']) && text.len() <= 4 {
        return Err(err(format!(
            "`{text}` is not crontab syntax (Quartz-style `?`, `L`, `W` and `#` are not \
             supported); the {} field needs {what}",
            field.name()
        )));
    }
    Err(err(format!(
        "`{text}` is not {what} in the {} field",
        field.name()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ExprError {
        CronExpr::parse(text).expect_err(text)
    }

    #[test]
    fn fields_take_numbers_names_ranges_lists_and_steps() {
        let e = CronExpr::parse("*/15 1-10/3 1,15 JAN-mar Mon-FRI").expect("parses");
        let [m, h, d, mo, w] = e.values();
        assert_eq!(m, vec![0, 15, 30, 45]);
        assert_eq!(h, vec![1, 4, 7, 10]);
        assert_eq!(d, vec![1, 15]);
        assert_eq!(mo, vec![1, 2, 3]);
        assert_eq!(w, vec![1, 2, 3, 4, 5]);
        assert_eq!(e.crontab_fields(), "*/15 1-10/3 1,15 1-3 1-5");
        assert!(e.is_wildcard());
        assert!(e.days_ored());
    }

    #[test]
    fn seven_is_sunday_and_macros_expand() {
        let e = CronExpr::parse("0 0 * * 7").expect("7");
        assert_eq!(e.values()[4], vec![0]);
        let e = CronExpr::parse("0 0 * * 5-7").expect("5-7");
        assert_eq!(e.values()[4], vec![0, 5, 6]);
        let e = CronExpr::parse("@weekly").expect("weekly");
        assert_eq!(e.crontab_fields(), "0 0 * * 0");
        assert_eq!(e.written(), "@weekly");
        assert!(!CronExpr::parse("@daily").expect("daily").is_wildcard());
        assert!(CronExpr::parse("@hourly").expect("hourly").is_wildcard());
    }

    #[test]
    fn star_with_a_step_counts_as_star_for_the_day_rule() {
        assert!(!CronExpr::parse("0 0 */2 * 1").expect("p").days_ored());
        assert!(CronExpr::parse("0 0 1-31/2 * 1").expect("p").days_ored());
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = err("30 25 * * *");
        assert_eq!((e.start, e.end), (3, 5));
        assert!(
            e.message.contains("out of range for the hour field"),
            "{e:?}"
        );
        let e = err("0 0 * * mon-fro");
        assert_eq!((e.start, e.end), (12, 15));
        let e = err("0 30 2 * * *");
        assert!(e.message.contains("5 time fields"), "{e:?}");
        assert_eq!(e.start, 11);
        let e = err("5/10 * * * *");
        assert!(e.help.as_deref().unwrap_or("").contains("5-59/10"), "{e:?}");
        let e = err("*/0 * * * *");
        assert_eq!((e.start, e.end), (2, 3));
        let e = err("@reboot");
        assert!(e.message.contains("@reboot"));
        assert!(err("@dayly").help.unwrap_or_default().contains("@daily"));
        let e = err("0 0 30 2 *");
        assert!(e.message.contains("never fires"), "{e:?}");
        assert_eq!((e.start, e.end), (4, 6));
        assert!(CronExpr::parse("0 0 29 2 *").is_ok());
        assert!(CronExpr::parse("0 0 30 2 1").is_ok(), "ORed with Mondays");
        let e = err("0 0 5-1 * *");
        assert!(e.message.contains("backwards"));
        let e = err("0 0 ? * MON");
        assert!(e.message.contains("Quartz"), "{e:?}");
        assert!(err("0 0 1,,2 * *").message.contains("empty item"));
        assert!(err("").message.contains("empty"));
        // A missing value points at the `,`, `/` or `-` next to it.
        assert_eq!((err("0 0 1, * *").start, err("0 0 1, * *").end), (5, 6));
        assert_eq!((err("*/ * * * *").start, err("*/ * * * *").end), (1, 2));
        assert_eq!((err("1- * * * *").start, err("1- * * * *").end), (1, 2));
        assert_eq!((err("-1 * * * *").start, err("-1 * * * *").end), (0, 1));
        assert!(err("* * *").message.contains("this has 3"));
    }
}
