//! Schedules as kubeflow's ScheduledSparkApplication writes them, parsed strictly: a 5-field cron
//! line, the `@hourly`-style macros, `@every <Go duration>`, a `CRON_TZ=`/`TZ=` prefix, and
//! `spec.timeZone` (IANA names). Also Go's duration notation (`1m30s`), which the apiserver's
//! `?timeout=` uses too. Pure: the webhook refuses with [`ScheduleError`], the schedule
//! controller computes slots.
//!
//! Cron lines are parsed and evaluated by `croner` (POSIX/Vixie semantics, as robfig/cron's
//! `ParseStandard`: day of week 0-7 with Sunday 0 or 7, day of month OR day of week when both are
//! restricted, DST gaps and folds handled), time zones come from `chrono-tz`, whose database is
//! compiled in: the operator's image has no `/usr/share/zoneinfo`, as Go embeds `time/tzdata`.
//!
//! Slots are whole seconds. A cron slot is a pure function of the line and the zone. `@every d`
//! counts from an anchor (the schedule's creation time: the first run comes `d` after it, as in
//! kubeflow), so every replica computes the same slots, which the run names are made of.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::Timestamp;

/// Parses the Go duration strings (`10s`, `1m30s`, `500ms`, `1.5h`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let secs = match unit {
            "h" => value * 3600.0,
            "m" => value * 60.0,
            "s" => value,
            "ms" => value / 1e3,
            "us" | "µs" => value / 1e6,
            "ns" => value / 1e9,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(secs).ok()?)?;
        rest = next;
    }
    Some(total)
}

/// Which field a [`ScheduleError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Schedule,
    TimeZone,
}

impl Field {
    /// The field's path in a ScheduledSparkApplication.
    pub fn path(self) -> &'static str {
        match self {
            Self::Schedule => "spec.schedule",
            Self::TimeZone => "spec.timeZone",
        }
    }
}

/// Why a schedule cannot be used, and in which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: Field,
    pub message: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.path(), self.message)
    }
}

impl std::error::Error for ScheduleError {}

/// A parsed schedule: when its slots are.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron {
        cron: Box<Cron>,
        zone: Tz,
    },
    /// `@every`: slots at `anchor + k * period` seconds, k >= 1.
    Every {
        period: i64,
        anchor: i64,
    },
}

/// The longest schedule line read; a longer one is refused, not searched.
const MAX_SCHEDULE_LEN: usize = 256;

impl Schedule {
    /// Parses `schedule` in `time_zone` (empty or `Local`: UTC, the zone kubeflow's container
    /// runs in). `anchor` is where `@every` counts from (the schedule's creation).
    pub fn parse(
        schedule: &str,
        time_zone: Option<&str>,
        anchor: Timestamp,
    ) -> Result<Self, ScheduleError> {
        let err = |field, message: String| ScheduleError { field, message };
        let line = schedule.trim();
        if line.is_empty() {
            return Err(err(Field::Schedule, "is empty; a cron line such as \"0 * * * *\", a macro such as \"@hourly\", or \"@every 10m\"".into()));
        }
        if line.len() > MAX_SCHEDULE_LEN {
            return Err(err(
                Field::Schedule,
                format!("is longer than {MAX_SCHEDULE_LEN} characters"),
            ));
        }
        // robfig/cron's own prefix wins over spec.timeZone, as in kubeflow.
        let (zone_name, field, line) = match line
            .strip_prefix("CRON_TZ=")
            .or_else(|| line.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (zone, line) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (zone, Field::Schedule, line.trim())
            }
            None => (time_zone.unwrap_or_default(), Field::TimeZone, line),
        };
        let zone = zone(zone_name).map_err(|m| err(field, m))?;
        if let Some(every) = line.strip_prefix("@every") {
            let every = every.trim();
            let d = parse_go_duration(every).ok_or_else(|| {
                err(
                    Field::Schedule,
                    format!("{every:?} after @every is not a duration such as 30s, 10m or 1h30m"),
                )
            })?;
            // robfig/cron: whole seconds, at least one.
            let period = i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1);
            return Ok(Self::Every {
                period,
                anchor: anchor.as_second(),
            });
        }
        let line = if line.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            line
        };
        if line.starts_with('@') && !is_macro(line) {
            return Err(err(
                Field::Schedule,
                format!(
                    "{line:?} is not a known macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>)"
                ),
            ));
        }
        let fields = line.split_whitespace().count();
        if !line.starts_with('@') && fields != 5 {
            return Err(err(
                Field::Schedule,
                format!(
                    "{line:?} has {fields} fields; a cron line has 5: minute hour day-of-month month day-of-week"
                ),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(line)
            .map_err(|e| err(Field::Schedule, format!("{line:?}: {e}")))?;
        let schedule = Self::Cron {
            cron: Box::new(cron),
            zone,
        };
        // A line that never fires (`0 0 30 2 *`) is refused now, not found out at run time.
        if schedule.next_after(anchor).is_none() {
            return Err(err(Field::Schedule, format!("{line:?} never fires")));
        }
        Ok(schedule)
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Every { period, anchor } => {
                let t = t.as_second();
                let k = if t < *anchor {
                    1
                } else {
                    (t - anchor) / period + 1
                };
                Timestamp::from_second(anchor.checked_add(k.checked_mul(*period)?)?).ok()
            }
            Self::Cron { cron, zone } => {
                let at = in_zone(t, zone)?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Timestamp::from_second(next.timestamp()).ok()
            }
        }
    }

    /// The last slot at or before `t`, if there is one (for `@every`: not before the first).
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Every { period, anchor } => {
                let t = t.as_second();
                let k = (t - anchor).div_euclid(*period);
                (k >= 1)
                    .then(|| Timestamp::from_second(anchor + k * period).ok())
                    .flatten()
            }
            Self::Cron { cron, zone } => {
                let at = in_zone(t, zone)?;
                let prev = cron.find_previous_occurrence(&at, true).ok()?;
                Timestamp::from_second(prev.timestamp()).ok()
            }
        }
    }

    /// Whether `t` is one of the slots.
    pub fn is_slot(&self, t: Timestamp) -> bool {
        t.subsec_nanosecond() == 0 && self.latest_at_or_before(t) == Some(t)
    }
}

/// A zone by name: empty, `Local` and `UTC` are UTC; else an IANA name.
fn zone(name: &str) -> Result<Tz, String> {
    if name.is_empty() || name == "Local" {
        return Ok(Tz::UTC);
    }
    Tz::from_str(name).map_err(|_| {
        format!("unknown time zone {name:?}: an IANA name such as \"Europe/Berlin\" or \"America/New_York\", or \"UTC\"")
    })
}

fn is_macro(line: &str) -> bool {
    [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
    ]
    .iter()
    .any(|m| line.eq_ignore_ascii_case(m))
}

/// `t`, truncated to the second, in `zone`.
fn in_zone(t: Timestamp, zone: &Tz) -> Option<DateTime<Tz>> {
    let utc: DateTime<Utc> = Utc.timestamp_opt(t.as_second(), 0).single()?;
    Some(utc.with_timezone(zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn parse(s: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        Schedule::parse(s, tz, ts("2026-01-01T00:00:00Z"))
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("x"), None);
    }

    #[test]
    fn five_field_lines_follow_posix_weekdays_and_the_zone() {
        // Sunday is 0 (and 7), as in robfig/cron; 2026-01-04 is a Sunday.
        let s = parse("30 9 * * 0", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-04T09:30:00Z"))
        );
        let s = parse("30 9 * * 7", None).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-04T09:30:00Z"))
        );
        // 09:30 in New York in January is 14:30 UTC.
        let s = parse("30 9 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T14:30:00Z"))
        );
        // The CRON_TZ= prefix wins over timeZone.
        let s = parse("CRON_TZ=Asia/Tokyo 0 9 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(
                ts("2026-01-01T00:00:00Z")
                    .checked_add(jiff_hours(24))
                    .unwrap()
            )
        );
        assert!(s.is_slot(ts("2026-01-02T00:00:00Z")));
        assert!(!s.is_slot(ts("2026-01-02T00:00:01Z")));
        assert_eq!(
            s.latest_at_or_before(ts("2026-01-02T05:00:00Z")),
            Some(ts("2026-01-02T00:00:00Z"))
        );
    }

    fn jiff_hours(h: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_hours(h)
    }

    #[test]
    fn macros_are_robfigs() {
        for (m, next) in [
            ("@hourly", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-02T00:00:00Z"),
            ("@midnight", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-02-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
        ] {
            let s = parse(m, None).unwrap();
            assert_eq!(
                s.next_after(ts("2026-01-01T00:00:00Z")),
                Some(ts(next)),
                "{m}"
            );
        }
    }

    #[test]
    fn every_counts_whole_seconds_from_the_anchor() {
        let s = Schedule::parse("@every 10s", None, ts("2026-01-01T00:00:03.5Z")).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T00:00:13Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:13Z")),
            Some(ts("2026-01-01T00:00:23Z"))
        );
        assert_eq!(s.latest_at_or_before(ts("2026-01-01T00:00:12Z")), None);
        assert_eq!(
            s.latest_at_or_before(ts("2026-01-01T00:01:00Z")),
            Some(ts("2026-01-01T00:00:53Z"))
        );
        assert!(s.is_slot(ts("2026-01-01T00:00:23Z")));
        assert!(!s.is_slot(ts("2026-01-01T00:00:20Z")));
        // Below a second: one second, as robfig/cron.
        let s = parse("@every 100ms", None).unwrap();
        assert!(matches!(s, Schedule::Every { period: 1, .. }));
    }

    #[test]
    fn bad_schedules_and_zones_name_their_field_and_reason() {
        let e = parse("* * * *", None).unwrap_err();
        assert_eq!(e.field, Field::Schedule);
        assert!(e.message.contains("has 4 fields"), "{e}");
        let e = parse("61 * * * *", None).unwrap_err();
        assert_eq!(e.field, Field::Schedule);
        let e = parse("@every often", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.schedule: \"often\" after @every"),
            "{e}"
        );
        let e = parse("@fortnightly", None).unwrap_err();
        assert!(e.message.contains("not a known macro"), "{e}");
        let e = parse("0 0 30 2 *", None).unwrap_err();
        assert!(e.message.contains("never fires"), "{e}");
        let e = parse("", None).unwrap_err();
        assert!(e.message.contains("is empty"), "{e}");
        let e = parse("@hourly", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, Field::TimeZone);
        assert!(
            e.to_string()
                .starts_with("spec.timeZone: unknown time zone \"Mars/Olympus\"")
        );
        let e = parse("CRON_TZ=Nowhere 0 * * * *", None).unwrap_err();
        assert_eq!(e.field, Field::Schedule);
        assert!(parse("@hourly", Some("Local")).is_ok());
        assert!(parse("@hourly", Some("UTC")).is_ok());
        assert!(parse("*/5 1-3 ? JAN-MAR MON-FRI", None).is_ok());
    }
}
