//! Spend periods of API keys: days, weeks (from Monday) and months at UTC boundaries, and the
//! civil-date arithmetic behind them (Howard Hinnant's algorithms; no time crate needed).

use serde::{Deserialize, Serialize};

/// The period a key's spend limit applies to; periods start at UTC boundaries (a week on
/// Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendPeriod {
    Daily,
    Weekly,
    Monthly,
    /// Never resets.
    Total,
}

impl SpendPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendPeriod::Daily => "daily",
            SpendPeriod::Weekly => "weekly",
            SpendPeriod::Monthly => "monthly",
            SpendPeriod::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<SpendPeriod> {
        Some(match s {
            "daily" => SpendPeriod::Daily,
            "weekly" => SpendPeriod::Weekly,
            "monthly" => SpendPeriod::Monthly,
            "total" => SpendPeriod::Total,
            _ => return None,
        })
    }

    /// The `key_spend.period` name for this period.
    pub fn counter(self) -> &'static str {
        match self {
            SpendPeriod::Daily => "day",
            SpendPeriod::Weekly => "week",
            SpendPeriod::Monthly => "month",
            SpendPeriod::Total => "total",
        }
    }

    /// When the period containing `now_ms` started (0 for `Total`).
    pub fn start(self, now_ms: i64) -> i64 {
        const DAY: i64 = 86_400_000;
        let day = now_ms.div_euclid(DAY);
        match self {
            SpendPeriod::Total => 0,
            SpendPeriod::Daily => day * DAY,
            // 1970-01-01 was a Thursday: Monday is 3 days before day 0 mod 7.
            SpendPeriod::Weekly => (day - (day + 3).rem_euclid(7)) * DAY,
            SpendPeriod::Monthly => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * DAY
            }
        }
    }

    /// When the period containing `now_ms` ends (None for `Total`).
    pub fn end(self, now_ms: i64) -> Option<i64> {
        const DAY: i64 = 86_400_000;
        let start = self.start(now_ms);
        match self {
            SpendPeriod::Total => None,
            SpendPeriod::Daily => Some(start + DAY),
            SpendPeriod::Weekly => Some(start + 7 * DAY),
            SpendPeriod::Monthly => {
                let (y, m, _) = civil_from_days(start / DAY);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(days_from_civil(y, m, 1) * DAY)
            }
        }
    }
}

/// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn periods_start_at_utc_boundaries() {
        // 2026-11-23 (a Monday) 21:13 UTC
        let now = days_from_civil(2026, 11, 23) * DAY + 76_380_000;
        assert_eq!(civil_from_days(now / DAY), (2026, 11, 23));
        assert_eq!(
            SpendPeriod::Daily.start(now),
            days_from_civil(2026, 11, 23) * DAY
        );
        assert_eq!(
            SpendPeriod::Weekly.start(now),
            days_from_civil(2026, 11, 23) * DAY
        );
        let sunday = days_from_civil(2026, 11, 29) * DAY + 5;
        assert_eq!(
            SpendPeriod::Weekly.start(sunday),
            days_from_civil(2026, 11, 23) * DAY
        );
        assert_eq!(
            SpendPeriod::Monthly.start(now),
            days_from_civil(2026, 11, 1) * DAY
        );
        assert_eq!(
            SpendPeriod::Monthly.end(now),
            Some(days_from_civil(2026, 12, 1) * DAY)
        );
        let dec = days_from_civil(2026, 12, 31) * DAY;
        assert_eq!(
            SpendPeriod::Monthly.end(dec),
            Some(days_from_civil(2027, 1, 1) * DAY)
        );
        assert_eq!(SpendPeriod::Total.start(now), 0);
        assert_eq!(SpendPeriod::Total.end(now), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
