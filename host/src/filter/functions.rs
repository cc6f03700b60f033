//! Filter functions (`strftime`, `geoDistance`) and the datetime macros (`@now`, ...).

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Timelike, Utc};

use super::ast::{Macro, Operand};
use super::build::operand;
use super::resolve::Resolver;
use super::sql::{Emptiness, Frag, MultiSub, Resolved};
use super::{FilterError, SqlParam};

/// Mean Earth radius in kilometres, as PocketBase's `geoDistance` uses.
const EARTH_RADIUS_KM: &str = "6371";

/// `geoDistance(lonA, latA, lonB, latB)`: the haversine distance in kilometres between two
/// points, as PocketBase computes it in SQL. Each argument is a number or an identifier (a
/// field path such as `place.lon`, `null`, ...). Like SQLite's own functions it has no
/// "every value" semantics: over a multiple relation it holds when some related record's
/// distance satisfies the comparison. The result never falls back to '' for `=`.
pub(super) fn geo_distance(res: &mut Resolver, args: &[Operand]) -> Result<Resolved, FilterError> {
    if args.len() != 4 {
        return Err(FilterError::Invalid(format!(
            "geoDistance: expected 4 arguments, got {}",
            args.len()
        )));
    }
    let mut resolved = Vec::with_capacity(4);
    for (i, arg) in args.iter().enumerate() {
        if matches!(arg, Operand::Text(_) | Operand::Call { .. }) {
            return Err(FilterError::Invalid(format!(
                "geoDistance: argument {i} must be an identifier or number"
            )));
        }
        resolved.push(operand(res, arg)?);
    }
    let uses_join = resolved.iter().any(|r| r.uses_join);
    let [lon_a, lat_a, lon_b, lat_b] = [0, 1, 2, 3].map(|i| resolved[i].ident.clone());
    let radians = |x: &Frag| Frag::raw("radians(").f(x).s(")");
    let sql = Frag::raw(format!("({EARTH_RADIUS_KM} * acos("))
        .s("cos(")
        .f(&radians(&lat_a))
        .s(") * cos(")
        .f(&radians(&lat_b))
        .s(") * cos(")
        .f(&radians(&lon_b))
        .s(" - ")
        .f(&radians(&lon_a))
        .s(") + sin(")
        .f(&radians(&lat_a))
        .s(") * sin(")
        .f(&radians(&lat_b))
        .s(")))");
    let mut r = Resolved::plain(sql, Emptiness::Unknown);
    r.no_coalesce = true;
    r.uses_join = uses_join;
    Ok(r)
}

/// `strftime(format[, time-value[, modifier...]])`: SQLite's `strftime`, with the '' / NULL
/// normalisation of `=` always applied to its result. A multi-valued time value keeps its
/// "all values" semantics.
pub(super) fn strftime(res: &mut Resolver, args: &[Operand]) -> Result<Resolved, FilterError> {
    let invalid = |m: &str| FilterError::Invalid(format!("strftime: {m}"));
    if args.is_empty() || args.len() > 10 {
        return Err(invalid("expects 1 to 10 arguments"));
    }
    let Operand::Text(format) = &args[0] else {
        return Err(invalid("the first argument must be a format string"));
    };
    let format = Frag::param(SqlParam::Text(format.clone()));
    let mut modifiers = Frag::default();
    for m in args.iter().skip(2) {
        let Operand::Text(m) = m else {
            return Err(invalid("modifiers must be strings"));
        };
        modifiers = modifiers.s(", ").f(&Frag::param(SqlParam::Text(m.clone())));
    }
    let call = |value: Option<&Frag>| {
        let f = Frag::raw("strftime(").f(&format);
        match value {
            Some(v) => f.s(", ").f(v).f(&modifiers).s(")"),
            None => f.s(")"),
        }
    };
    let Some(time) = args.get(1) else {
        return Ok(Resolved::plain(call(None), Emptiness::Unknown));
    };
    if matches!(time, Operand::Call { .. }) {
        return Err(invalid("the time value must be a field, string or number"));
    }
    let time = operand(res, time)?;
    let mut r = Resolved::plain(call(Some(&time.ident)), Emptiness::Unknown);
    r.uses_join = time.uses_join;
    r.multi = time.multi.map(|m| MultiSub {
        value: call(Some(&m.value)),
        from: m.from,
    });
    Ok(r)
}

/// PocketBase's datetime text: `YYYY-MM-DD HH:MM:SS.mmmZ`.
fn format_date(d: NaiveDateTime) -> String {
    d.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

pub(super) fn macro_value(m: Macro, now: DateTime<Utc>) -> Result<SqlParam, FilterError> {
    let bad = || FilterError::Invalid("date out of range".into());
    let day_start = |d: NaiveDate| d.and_hms_milli_opt(0, 0, 0, 0).ok_or_else(bad);
    let day_end = |d: NaiveDate| d.and_hms_milli_opt(23, 59, 59, 999).ok_or_else(bad);
    let today = now.date_naive();
    let month_start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).ok_or_else(bad)?;
    let int = |v: u32| Ok(SqlParam::Int(i64::from(v)));
    let date = |d: Result<NaiveDateTime, FilterError>| Ok(SqlParam::Text(format_date(d?)));
    match m {
        Macro::Now => date(Ok(now.naive_utc())),
        Macro::Second => int(now.second()),
        Macro::Minute => int(now.minute()),
        Macro::Hour => int(now.hour()),
        Macro::Day => int(now.day()),
        Macro::Month => int(now.month()),
        Macro::Year => Ok(SqlParam::Int(i64::from(now.year()))),
        Macro::Weekday => int(now.weekday().num_days_from_sunday()),
        Macro::Yesterday => date(Ok((now - chrono::Duration::days(1)).naive_utc())),
        Macro::Tomorrow => date(Ok((now + chrono::Duration::days(1)).naive_utc())),
        Macro::TodayStart => date(day_start(today)),
        Macro::TodayEnd => date(day_end(today)),
        Macro::MonthStart => date(day_start(month_start)),
        Macro::MonthEnd => {
            let last = month_start
                .checked_add_months(Months::new(1))
                .and_then(|d| d.pred_opt());
            date(day_end(last.ok_or_else(bad)?))
        }
        Macro::YearStart => date(day_start(
            NaiveDate::from_ymd_opt(today.year(), 1, 1).ok_or_else(bad)?,
        )),
        Macro::YearEnd => date(day_end(
            NaiveDate::from_ymd_opt(today.year(), 12, 31).ok_or_else(bad)?,
        )),
    }
}
