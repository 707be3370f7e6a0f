//! The ISO 8583 placeholders of the `generate` gear: card numbers with a Luhn check digit,
//! trace numbers, retrieval references, amounts, expiry dates and the date and time fields,
//! each written at the width its ISO 8583:1987 field has.

use std::fmt::Write as _;
use std::time::Duration;

use rand::RngExt;

use super::blueprint::Cx;

/// The shortest and longest PAN `${pan}` makes (ISO/IEC 7812).
const PAN_LEN: std::ops::RangeInclusive<usize> = 12..=19;
/// The PAN length when the placeholder gives none.
const DEFAULT_PAN_LEN: usize = 16;
/// The largest STAN (DE 11 is six digits; 000000 is not used).
const STAN_MAX: u64 = 999_999;
/// The sequence part of an RRN: eight digits.
const RRN_SEQ: u64 = 100_000_000;
/// The largest amount DE 4 holds: twelve digits.
const AMOUNT_MAX: u64 = 999_999_999_999;
/// How far ahead `${expiry}` goes when the placeholder gives no limit.
const DEFAULT_EXPIRY_MONTHS: u32 = 36;
/// The most months ahead `${expiry:MONTHS}` accepts (fifty years).
const MAX_EXPIRY_MONTHS: u32 = 600;
/// How far back an expired card's date goes: 1 to this many months before now.
const EXPIRED_MONTHS: u32 = 24;

/// The ISO 8583 placeholders, for error messages.
pub(super) const KNOWN: &str = "pan:BIN|BIN:LEN, stan, stan:START, rrn, rrn:START, \
     amount:MIN:MAX, expiry, expiry:MONTHS, expiry:MONTHS:EXPIRED_PERCENT, \
     transmission_datetime, local_time, local_date";

/// One ISO 8583 placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum IsoVar {
    /// `pan:BIN|BIN:LEN`: a BIN drawn uniformly, random digits, a Luhn check digit.
    Pan { bins: Vec<String>, len: usize },
    /// `stan:START`: six digits, START plus the index, wrapping from 999999 to 000001.
    Stan(u64),
    /// `rrn:START`: the Julian date `YDDD` then eight digits of START plus the index.
    Rrn(u64),
    /// `amount:MIN:MAX`: twelve digits, zero-padded.
    Amount(u64, u64),
    /// `expiry:MONTHS:EXPIRED_PERCENT`: `YYMM`, 1 to MONTHS months after this month, or
    /// (EXPIRED_PERCENT of the time) 1 to 24 months before it.
    Expiry { months: u32, expired_percent: f64 },
    /// `transmission_datetime`: `MMDDhhmmss` (DE 7).
    TransmissionDateTime,
    /// `local_time`: `hhmmss` (DE 12).
    LocalTime,
    /// `local_date`: `MMDD` (DE 13).
    LocalDate,
}

impl IsoVar {
    /// Parses the placeholder `name` with its argument; `None` if `name` is not one of these.
    pub(super) fn parse(
        inner: &str,
        name: &str,
        arg: Option<&str>,
    ) -> Option<Result<IsoVar, String>> {
        let parsed = match (name, arg) {
            ("pan", Some(arg)) => pan(inner, arg),
            ("pan", None) => Err(format!(
                "${{{inner}}} needs at least one BIN: ${{pan:411111|550000:16}}"
            )),
            ("stan", None) => Ok(IsoVar::Stan(1)),
            ("stan", Some(start)) => start
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=STAN_MAX).contains(s))
                .map(IsoVar::Stan)
                .ok_or_else(|| format!("${{{inner}}}: START must be an integer 1..=999999")),
            ("rrn", None) => Ok(IsoVar::Rrn(0)),
            ("rrn", Some(start)) => start
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s < RRN_SEQ)
                .map(IsoVar::Rrn)
                .ok_or_else(|| format!("${{{inner}}}: START must be an integer 0..=99999999")),
            ("amount", Some(arg)) => amount(inner, arg),
            ("amount", None) => Err(format!(
                "${{{inner}}} needs a range in minor units: ${{amount:MIN:MAX}}"
            )),
            ("expiry", arg) => expiry(inner, arg),
            ("transmission_datetime", None) => Ok(IsoVar::TransmissionDateTime),
            ("local_time", None) => Ok(IsoVar::LocalTime),
            ("local_date", None) => Ok(IsoVar::LocalDate),
            ("transmission_datetime" | "local_time" | "local_date", Some(_)) => {
                Err(format!("${{{name}}} takes no argument, not ${{{inner}}}"))
            }
            _ => return None,
        };
        Some(parsed)
    }

    /// Appends the placeholder's text to `out`.
    pub(super) fn write(&self, cx: &mut Cx<'_>, out: &mut String) {
        match self {
            IsoVar::Pan { bins, len } => {
                let i = cx.rng.random_range(0..bins.len());
                let bin = bins.get(i).map_or("", String::as_str);
                let start = out.len();
                out.push_str(bin);
                for _ in bin.len()..len.saturating_sub(1) {
                    out.push(char::from(b'0' + cx.rng.random_range(0..10u8)));
                }
                // BINs are digits (checked when the template is compiled), and so is the rest.
                let check = iso8583::luhn_check_digit(&out.as_bytes()[start..]).unwrap_or(0);
                out.push(char::from(b'0' + check));
            }
            IsoVar::Stan(start) => {
                let stan = (start - 1 + cx.index % STAN_MAX) % STAN_MAX + 1;
                let _ = write!(out, "{stan:06}");
            }
            IsoVar::Rrn(start) => {
                let civil = Civil::of(cx.now);
                let seq = (start + cx.index % RRN_SEQ) % RRN_SEQ;
                let _ = write!(
                    out,
                    "{}{:03}{seq:08}",
                    civil.year.rem_euclid(10),
                    civil.day_of_year
                );
            }
            IsoVar::Amount(min, max) => {
                let _ = write!(out, "{:012}", cx.rng.random_range(*min..=*max));
            }
            IsoVar::Expiry {
                months,
                expired_percent,
            } => {
                let civil = Civil::of(cx.now);
                let this = civil.year * 12 + i64::from(civil.month) - 1;
                let expired =
                    *expired_percent > 0.0 && cx.rng.random_range(0.0..100.0) < *expired_percent;
                let month = if expired {
                    this - i64::from(cx.rng.random_range(1..=EXPIRED_MONTHS))
                } else {
                    this + i64::from(cx.rng.random_range(1..=*months))
                };
                let _ = write!(
                    out,
                    "{:02}{:02}",
                    month.div_euclid(12).rem_euclid(100),
                    month.rem_euclid(12) + 1
                );
            }
            IsoVar::TransmissionDateTime => {
                let c = Civil::of(cx.now);
                let _ = write!(
                    out,
                    "{:02}{:02}{:02}{:02}{:02}",
                    c.month, c.day, c.hour, c.minute, c.second
                );
            }
            IsoVar::LocalTime => {
                let c = Civil::of(cx.now);
                let _ = write!(out, "{:02}{:02}{:02}", c.hour, c.minute, c.second);
            }
            IsoVar::LocalDate => {
                let c = Civil::of(cx.now);
                let _ = write!(out, "{:02}{:02}", c.month, c.day);
            }
        }
    }
}

/// `BIN|BIN[:LEN]`.
fn pan(inner: &str, arg: &str) -> Result<IsoVar, String> {
    let (bins, len) = match arg.split_once(':') {
        Some((bins, len)) => {
            let len = len
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| PAN_LEN.contains(n))
                .ok_or_else(|| {
                    format!(
                        "${{{inner}}}: LEN must be an integer {}..={}",
                        PAN_LEN.start(),
                        PAN_LEN.end()
                    )
                })?;
            (bins, len)
        }
        None => (arg, DEFAULT_PAN_LEN),
    };
    let bins: Vec<String> = bins.split('|').map(|b| b.trim().to_owned()).collect();
    for bin in &bins {
        if bin.is_empty() || !bin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "${{{inner}}}: a BIN is one or more digits, not {bin:?}"
            ));
        }
        if bin.len() >= len {
            return Err(format!(
                "${{{inner}}}: the BIN {bin} leaves no room for the check digit in a {len}-digit PAN"
            ));
        }
    }
    Ok(IsoVar::Pan { bins, len })
}

/// `MIN:MAX` in minor units, within twelve digits.
fn amount(inner: &str, arg: &str) -> Result<IsoVar, String> {
    let bad = || format!("${{{inner}}}: write MIN:MAX with two integers 0..={AMOUNT_MAX}");
    let (min, max) = arg.split_once(':').ok_or_else(bad)?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= AMOUNT_MAX)
            .ok_or_else(bad)
    };
    let (min, max) = (parse(min)?, parse(max)?);
    if min > max {
        return Err(format!("${{{inner}}}: MIN is greater than MAX"));
    }
    Ok(IsoVar::Amount(min, max))
}

/// `[MONTHS[:EXPIRED_PERCENT]]`.
fn expiry(inner: &str, arg: Option<&str>) -> Result<IsoVar, String> {
    let (months, percent) = match arg {
        None => (None, None),
        Some(arg) => match arg.split_once(':') {
            Some((m, p)) => (Some(m), Some(p)),
            None => (Some(arg), None),
        },
    };
    let months = match months {
        None => DEFAULT_EXPIRY_MONTHS,
        Some(m) => m
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=MAX_EXPIRY_MONTHS).contains(m))
            .ok_or_else(|| {
                format!("${{{inner}}}: MONTHS must be an integer 1..={MAX_EXPIRY_MONTHS}")
            })?,
    };
    let expired_percent = match percent {
        None => 0.0,
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| format!("${{{inner}}}: EXPIRED_PERCENT must be a number 0..=100"))?,
    };
    Ok(IsoVar::Expiry {
        months,
        expired_percent,
    })
}

/// A time's UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    /// 1 for January 1st.
    pub(crate) day_of_year: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

impl Civil {
    /// The calendar fields of `since_epoch` (a time since the Unix epoch), in UTC.
    pub(crate) fn of(since_epoch: Duration) -> Civil {
        let secs = since_epoch.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let in_day = secs % 86_400;
        // Days since 0000-03-01 in the proleptic Gregorian calendar, counted in 400-year eras
        // of 146,097 days, with years starting in March so that the leap day comes last.
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_march_year =
            day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_march_year + 2) / 153;
        let day = day_of_march_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let month = u32::try_from(month).unwrap_or(1);
        let day = u32::try_from(day).unwrap_or(1);
        let day_of_year = BEFORE[(month as usize - 1) % 12] + day + u32::from(leap && month > 2);
        Civil {
            year,
            month,
            day,
            day_of_year,
            hour: (in_day / 3_600) as u32,
            minute: (in_day / 60 % 60) as u32,
            second: (in_day % 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    use super::{Civil, Cx, IsoVar};

    fn text(var: &IsoVar, index: u64) -> String {
        text_at(var, index, 1_767_225_600)
    }

    fn text_at(var: &IsoVar, index: u64, unix_secs: u64) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(index);
        let mut cx = Cx {
            index,
            now: Duration::from_secs(unix_secs),
            rng: &mut rng,
        };
        let mut out = String::new();
        var.write(&mut cx, &mut out);
        out
    }

    #[test]
    fn expiry_months_cross_years_both_ways() {
        // 2026-12-15T10:00:00Z.
        let december = 1_797_328_800;
        let next = IsoVar::Expiry {
            months: 1,
            expired_percent: 0.0,
        };
        assert_eq!(text_at(&next, 0, december), "2701");
        let past = IsoVar::Expiry {
            months: 1,
            expired_percent: 100.0,
        };
        // 2026-01-01: 1 to 24 months back is 2024-01 to 2025-12.
        for i in 0..200 {
            let yymm = text_at(&past, i, 1_767_225_600);
            assert!(("2401"..="2512").contains(&yymm.as_str()), "{yymm}");
            assert!(!yymm.ends_with("00") && yymm[2..] <= *"12", "{yymm}");
        }
        // The RRN's year digit and Julian day: 2026-12-15 is day 349.
        assert_eq!(text_at(&IsoVar::Rrn(5), 0, december), "634900000005");
        assert_eq!(
            text_at(&IsoVar::TransmissionDateTime, 0, december),
            "1215100000"
        );
    }

    proptest! {
        /// A STAN is six digits in 000001..=999999 and the next one follows it, wrapping.
        #[test]
        fn stans_step_by_one_and_wrap(start in 1u64..=999_999, index in 0u64..u64::MAX) {
            let var = IsoVar::Stan(start);
            let here: u64 = text(&var, index).parse().unwrap_or(0);
            let next: u64 = text(&var, index.wrapping_add(1)).parse().unwrap_or(0);
            prop_assert!((1..=999_999).contains(&here));
            prop_assert_eq!(text(&var, index).len(), 6);
            if index < u64::MAX {
                prop_assert_eq!(next, here % 999_999 + 1);
            }
        }

        /// Calendar fields round-trip through the day count: each second of a day has the
        /// date of the day's first second.
        #[test]
        fn a_day_has_one_date(day in 0u64..200_000, second in 0u64..86_400) {
            let start = Civil::of(Duration::from_secs(day * 86_400));
            let later = Civil::of(Duration::from_secs(day * 86_400 + second));
            prop_assert_eq!((start.year, start.month, start.day), (later.year, later.month, later.day));
            let next = Civil::of(Duration::from_secs((day + 1) * 86_400));
            let step = (next.year, next.day_of_year) == (start.year, start.day_of_year + 1)
                || (next.year == start.year + 1 && next.day_of_year == 1 && next.month == 1);
            prop_assert!(step, "{:?} then {:?}", start, next);
        }
    }

    fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
        let c = Civil::of(Duration::from_secs(secs));
        (
            c.year,
            c.month,
            c.day,
            c.day_of_year,
            c.hour,
            c.minute,
            c.second,
        )
    }

    #[test]
    fn calendar_fields_match_known_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 1, 0, 0, 0));
        // 2026-01-01T00:00:00Z, the harness's start.
        assert_eq!(civil(1_767_225_600), (2026, 1, 1, 1, 0, 0, 0));
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(civil(1_709_251_199), (2024, 2, 29, 60, 23, 59, 59));
        // 2024-12-31T12:34:56Z: day 366 of a leap year.
        assert_eq!(civil(1_735_648_496), (2024, 12, 31, 366, 12, 34, 56));
        // 2000-03-01T00:00:00Z: 2000 is a leap year (divisible by 400).
        assert_eq!(civil(951_868_800), (2000, 3, 1, 61, 0, 0, 0));
        // 2100-03-01T00:00:00Z: 2100 is not.
        assert_eq!(civil(4_107_542_400), (2100, 3, 1, 60, 0, 0, 0));
    }

    #[test]
    fn arguments_are_checked() {
        let err = |inner: &str| {
            let (name, arg) = match inner.split_once(':') {
                Some((n, a)) => (n, Some(a)),
                None => (inner, None),
            };
            IsoVar::parse(inner, name, arg)
                .expect("an ISO placeholder")
                .expect_err(inner)
        };
        assert!(err("pan").contains("needs at least one BIN"));
        assert!(err("pan:41x1").contains("a BIN is one or more digits"));
        assert!(err("pan:4111||5500").contains("a BIN is one or more digits, not \"\""));
        assert!(err("pan:411111:11").contains("LEN must be an integer 12..=19"));
        assert!(err("pan:4111111111111:13").contains("leaves no room"));
        assert!(err("stan:0").contains("1..=999999"));
        assert!(err("stan:1000000").contains("1..=999999"));
        assert!(err("rrn:100000000").contains("0..=99999999"));
        assert!(err("amount").contains("needs a range"));
        assert!(err("amount:5:1").contains("MIN is greater than MAX"));
        assert!(err("amount:0:1000000000000").contains("0..=999999999999"));
        assert!(err("expiry:0").contains("MONTHS"));
        assert!(err("expiry:12:101").contains("EXPIRED_PERCENT"));
        assert!(err("local_time:x").contains("takes no argument"));
        assert!(IsoVar::parse("nope", "nope", None).is_none());
    }
}
