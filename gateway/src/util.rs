//! Small helpers: serde forms of times, and UTC times as people read them.

/// `SystemTime` as milliseconds since the Unix epoch.
pub mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        s.serialize_u64(ms)
    }
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch, or null.
pub mod unix_ms_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::unix_ms::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

/// ms since the epoch as `YYYY-MM-DD HH:MM` UTC.
pub fn utc_minute(ms: i64) -> String {
    let (days, secs) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 1000);
    let (y, m, d) = crate::store::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_minutes() {
        assert_eq!(super::utc_minute(0), "1970-01-01 00:00");
        assert_eq!(super::utc_minute(1_795_468_380_000), "2026-11-23 21:13");
        assert_eq!(super::utc_minute(1_779_571_980_000), "2026-05-23 21:33");
    }
}
