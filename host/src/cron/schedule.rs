//! Cron expressions as PocketBase reads them (`tools/cron/schedule.go`): five space-separated
//! fields (minute, hour, day of month, month, day of week; Sunday is 0), each a list of `*`,
//! `n`, `a-b`, `*/s` or `a-b/s`, or one of the macros `@yearly` … `@hourly`. A moment is due
//! when every field contains it (no special day-of-month / day-of-week rule). Pure.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Why an expression is not a schedule (PocketBase's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

/// A parsed schedule: the allowed values of each field, as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
}

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let expr = MACROS
            .iter()
            .find(|(m, _)| *m == expr)
            .map_or(expr, |(_, e)| *e);
        let parts: Vec<&str> = expr.split(' ').collect();
        let [minute, hour, day, month, weekday] = parts.as_slice() else {
            return Err(ScheduleError(
                "invalid cron expression - must be a valid macro or to have exactly 5 space separated segments".into(),
            ));
        };
        Ok(Schedule {
            minutes: segment(minute, 0, 59)?,
            hours: segment(hour, 0, 23)?,
            days: segment(day, 1, 31)?,
            months: segment(month, 1, 12)?,
            weekdays: segment(weekday, 0, 6)?,
        })
    }

    /// Whether the schedule fires in the minute of `t`.
    pub fn is_due(&self, t: DateTime<Utc>) -> bool {
        let has = |set: u64, v: u32| set & (1u64 << v) != 0;
        has(self.minutes, t.minute())
            && has(self.hours, t.hour())
            && has(self.days, t.day())
            && has(self.months, t.month())
            && has(self.weekdays, t.weekday().num_days_from_sunday())
    }
}

fn number(s: &str) -> Result<u32, ScheduleError> {
    s.parse::<u32>()
        .map_err(|_| ScheduleError(format!("strconv.Atoi: parsing {s:?}: invalid syntax")))
}

fn segment(segment: &str, min: u32, max: u32) -> Result<u64, ScheduleError> {
    let mut set = 0u64;
    for part in segment.split(',') {
        let step_parts: Vec<&str> = part.split('/').collect();
        let step = match step_parts.as_slice() {
            [_] => 1,
            [_, step] => {
                let s = number(step)?;
                if s < 1 || s > max {
                    return Err(ScheduleError(format!(
                        "invalid segment step boundary - the step must be between 1 and the {max}"
                    )));
                }
                s
            }
            _ => {
                return Err(ScheduleError(
                    "invalid segment step format - must be in the format */n or 1-30/n".into(),
                ));
            }
        };
        let (lo, hi) = if step_parts[0] == "*" {
            (min, max)
        } else {
            let range: Vec<&str> = step_parts[0].split('-').collect();
            match range.as_slice() {
                [one] => {
                    if step != 1 {
                        return Err(ScheduleError(
                            "invalid segment step - step > 1 could be used only with the wildcard or range format".into(),
                        ));
                    }
                    let v = number(one)?;
                    if v < min || v > max {
                        return Err(ScheduleError(
                            "invalid segment value - must be between the min and max of the segment".into(),
                        ));
                    }
                    (v, v)
                }
                [a, b] => {
                    let lo = number(a)?;
                    if lo < min || lo > max {
                        return Err(ScheduleError(format!(
                            "invalid segment range minimum - must be between {min} and {max}"
                        )));
                    }
                    let hi = number(b)?;
                    if hi < lo || hi > max {
                        return Err(ScheduleError(format!(
                            "invalid segment range maximum - must be between {lo} and {max}"
                        )));
                    }
                    (lo, hi)
                }
                _ => {
                    return Err(ScheduleError(
                        "invalid segment range format - the range must have 1 or 2 parts".into(),
                    ));
                }
            }
        };
        let mut v = lo;
        while v <= hi {
            set |= 1u64 << v;
            v += step;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn the_builtin_schedules_fire_when_pocketbase_fires_them() {
        let every6h = Schedule::parse("0 */6 * * *").expect("parse");
        assert!(every6h.is_due(at(2026, 3, 1, 0, 0)));
        assert!(every6h.is_due(at(2026, 3, 1, 18, 0)));
        assert!(!every6h.is_due(at(2026, 3, 1, 18, 1)));
        assert!(!every6h.is_due(at(2026, 3, 1, 7, 0)));
        let daily = Schedule::parse("@daily").expect("macro");
        assert_eq!(daily, Schedule::parse("0 0 * * *").expect("parse"));
        // 2026-03-01 is a Sunday.
        let weekly = Schedule::parse("@weekly").expect("macro");
        assert!(weekly.is_due(at(2026, 3, 1, 0, 0)));
        assert!(!weekly.is_due(at(2026, 3, 2, 0, 0)));
        let list = Schedule::parse("5,10-20/5 1 1-3 2 *").expect("parse");
        assert!(list.is_due(at(2026, 2, 2, 1, 15)));
        assert!(!list.is_due(at(2026, 2, 2, 1, 25)));
    }

    #[test]
    fn bad_expressions_are_refused_with_pocketbase_messages() {
        for (expr, msg) in [
            ("* * * *", "exactly 5 space separated segments"),
            ("60 * * * *", "must be between the min and max"),
            ("5/2 * * * *", "only with the wildcard or range"),
            ("*/0 * * * *", "step must be between 1 and the 59"),
            ("10-5 * * * *", "range maximum - must be between 10 and 59"),
            ("a * * * *", "invalid syntax"),
            ("1-2-3 * * * *", "1 or 2 parts"),
        ] {
            let err = Schedule::parse(expr).expect_err(expr);
            assert!(err.0.contains(msg), "{expr}: {err}");
        }
    }
}
