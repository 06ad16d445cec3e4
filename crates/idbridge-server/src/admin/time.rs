//! Times as operators type and read them: `2026-11-30T08:00:00Z` (UTC), a
//! date, unix seconds, or "this long ago" (`90s`, `30m`, `24h`, `7d`). The
//! current time is always a parameter.

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parse a moment: unix seconds (`1764489600`), UTC (`2026-11-30T08:00:00Z`),
/// a date (`2026-11-30`, midnight UTC), or a duration ago (`90s`, `30m`, `24h`, `7d`).
pub fn parse(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    let wrong = || {
        format!(
            "{s:?} is not a time: use unix seconds, 2026-11-30T08:00:00Z, 2026-11-30, or a duration ago such as 30m, 24h or 7d"
        )
    };
    if let Ok(n) = s.parse::<i64>() {
        return if n >= 0 { Ok(n) } else { Err(wrong()) };
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        let number = s.get(..s.len() - 1).unwrap_or("");
        if let Ok(n) = number.parse::<i64>() {
            let per = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return match n.checked_mul(per) {
                Some(ago) if n >= 0 => Ok(now - ago),
                _ => Err(wrong()),
            };
        }
    }
    let (date, clock) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(wrong)?)),
        None => (s, None),
    };
    let num = |p: Option<&str>| p.and_then(|x| x.parse::<i64>().ok()).ok_or_else(wrong);
    let mut parts = date.split('-');
    let (y, m, d) = (num(parts.next())?, num(parts.next())?, num(parts.next())?);
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(wrong());
    }
    let mut secs = 0;
    if let Some(clock) = clock {
        let mut parts = clock.split(':');
        let (h, mi, se) = (num(parts.next())?, num(parts.next())?, num(parts.next())?);
        if parts.next().is_some() || h > 23 || mi > 59 || se > 59 || h < 0 || mi < 0 || se < 0 {
            return Err(wrong());
        }
        secs = h * 3600 + mi * 60 + se;
    }
    let t = days_from_civil(y, m, d) * 86_400 + secs;
    // 2026-02-30 does not exist: formatting back must give the same date.
    if format(t).get(..10) != Some(&format!("{y:04}-{m:02}-{d:02}")) {
        return Err(wrong());
    }
    Ok(t)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_489_600; // 2025-11-30T08:00:00Z

    #[test]
    fn formats_utc() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(NOW), "2025-11-30T08:00:00Z");
        assert_eq!(format(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(parse("1764489600", NOW), Ok(NOW));
        assert_eq!(parse("2025-11-30T08:00:00Z", NOW), Ok(NOW));
        assert_eq!(parse("2025-11-30", NOW), Ok(NOW - 8 * 3600));
        assert_eq!(parse("2000-02-29", NOW), Ok(951_782_400));
        assert_eq!(parse("90s", NOW), Ok(NOW - 90));
        assert_eq!(parse("30m", NOW), Ok(NOW - 1800));
        assert_eq!(parse("24h", NOW), Ok(NOW - 86_400));
        assert_eq!(parse("7d", NOW), Ok(NOW - 7 * 86_400));
        for t in [0, NOW, 4_102_444_799] {
            assert_eq!(parse(&format(t), NOW), Ok(t));
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "-5",
            "-5d",
            "7w",
            "2025-02-30",
            "2025-13-01",
            "2025-11-30T25:00:00Z",
            "2025-11-30T08:00:00",
            "2025-11-30T08:00:00+08:00",
            "99999999999999999999d",
        ] {
            let err = parse(bad, NOW).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
        }
    }
}
