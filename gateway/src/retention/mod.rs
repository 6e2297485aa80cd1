//! Retention and data policy (issue 10): what of a request may be kept, for how long, and
//! which providers an org's data may go to.
//!
//! - The *mode* ([`RetentionMode`]) is chosen per org (`orgs.retention_mode`), per key when the
//!   org allows it (`api_keys.retention_mode`), and names the logging plugin that decides
//!   (`[retention] plugins`); the host hands request and response content to the logging stage
//!   only under `retain-all`, and stores exactly what the plugin returns.
//! - *Periods*: usage rows and content expire after the org's `retention_days` (0-90, or the
//!   plugin's own shorter choice), stored client IPs after `ip_retention_days` (at most 30);
//!   the purge (`purge.rs`) deletes and nulls what expired, in batches, off the request path.
//! - The *data policy* ([`DataPolicy`]) makes routing refuse providers that retain data, train
//!   on it, or sit outside the org's regions.

pub mod capture;
pub mod export;
pub mod purge;
pub mod state_seal;

use serde::{Deserialize, Serialize};

/// The longest an org may keep request logs, in days.
pub const MAX_RETENTION_DAYS: i64 = 90;
/// The longest a client IP address is kept, in days.
pub const MAX_IP_RETENTION_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// What the gateway may keep of an org's requests.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionMode {
    /// Request and response content with the metadata (what the logging plugin keeps of it).
    RetainAll,
    /// The usage event only: ids, model, tokens, cost, latency, status, attempts.
    #[default]
    MetadataOnly,
    /// No request log at all: only the ledger entry billing needs (a charge names the request).
    Zero,
}

impl RetentionMode {
    pub const ALL: [RetentionMode; 3] = [
        RetentionMode::RetainAll,
        RetentionMode::MetadataOnly,
        RetentionMode::Zero,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::RetainAll => "retain-all",
            RetentionMode::MetadataOnly => "metadata-only",
            RetentionMode::Zero => "zero",
        }
    }

    /// Parses a stored or requested mode (`retain-all`, `metadata-only`, `zero`).
    pub fn parse(s: &str) -> Option<RetentionMode> {
        RetentionMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The logging stage may see request and response content.
    pub fn sees_content(self) -> bool {
        self == RetentionMode::RetainAll
    }
}

impl std::fmt::Display for RetentionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode a request runs under: the key's own when the org lets keys choose, else the
/// org's; `metadata-only` when neither record is known (an auth plugin vouching for an org
/// this database does not list).
pub fn effective_mode(
    org: Option<&crate::store::Org>,
    key: Option<&crate::store::ApiKey>,
) -> RetentionMode {
    let org_mode = org
        .and_then(|o| RetentionMode::parse(&o.retention_mode))
        .unwrap_or_default();
    match (org, key.and_then(|k| k.retention_mode)) {
        (Some(o), Some(own)) if o.key_retention_override => own,
        _ => org_mode,
    }
}

/// When what is stored for a request made at `created_at` expires: after the plugin's
/// `retention_days` when it chose fewer than the org's (0 = the org's), never after more.
pub fn expires_at(created_at: i64, org_days: i64, plugin_days: u32) -> i64 {
    let org_days = org_days.clamp(0, MAX_RETENTION_DAYS);
    let days = match i64::from(plugin_days) {
        0 => org_days,
        d => d.min(org_days),
    };
    created_at.saturating_add(days.saturating_mul(DAY_MS))
}

/// When a stored client IP expires: after the org's IP period, at most 30 days, and never
/// after the row itself.
pub fn ip_expires_at(created_at: i64, ip_days: i64, row_expires_at: i64) -> i64 {
    let days = ip_days.clamp(0, MAX_IP_RETENTION_DAYS);
    created_at
        .saturating_add(days.saturating_mul(DAY_MS))
        .min(row_expires_at)
}

/// The retention a request runs under: its mode and the org's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub mode: RetentionMode,
    /// Days usage rows and content are kept (0-90).
    pub days: i64,
    /// Days a stored client IP is kept (0-30).
    pub ip_days: i64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: RetentionMode::MetadataOnly,
            days: 30,
            ip_days: MAX_IP_RETENTION_DAYS,
        }
    }
}

impl Policy {
    /// The policy of a request by `key` of `org` (defaults when the org is not in the store).
    pub fn of(org: Option<&crate::store::Org>, key: Option<&crate::store::ApiKey>) -> Policy {
        let base = Policy::default();
        Policy {
            mode: effective_mode(org, key),
            days: org.map_or(base.days, |o| o.retention_days.clamp(0, MAX_RETENTION_DAYS)),
            ip_days: org.map_or(base.ip_days, |o| {
                o.ip_retention_days.clamp(0, MAX_IP_RETENTION_DAYS)
            }),
        }
    }
}

/// Which providers an org's requests may go to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPolicy {
    /// Only providers with zero data retention (`zero_retention = true`).
    pub require_zdr: bool,
    /// No provider that trains on the data it is sent (`trains_on_data = true`).
    pub deny_training: bool,
    /// Only providers in these regions (empty: any).
    pub allowed_regions: Vec<String>,
}

impl DataPolicy {
    pub fn is_open(&self) -> bool {
        !self.require_zdr && !self.deny_training && self.allowed_regions.is_empty()
    }

    /// Parses the stored comma-separated region list.
    pub fn regions_from(stored: &str) -> Vec<String> {
        stored
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Why a provider with this metadata is refused, or None when it may be used.
    pub fn refuses(
        &self,
        zero_retention: bool,
        trains_on_data: bool,
        region: &str,
    ) -> Option<String> {
        if self.require_zdr && !zero_retention {
            return Some("the org requires zero data retention".into());
        }
        if self.deny_training && trains_on_data {
            return Some("the org refuses providers that train on its data".into());
        }
        if !self.allowed_regions.is_empty() && !self.allowed_regions.iter().any(|r| r == region) {
            let region = if region.is_empty() { "unknown" } else { region };
            return Some(format!(
                "the org allows only regions {} (provider region: {region})",
                self.allowed_regions.join(", ")
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for m in RetentionMode::ALL {
            assert_eq!(RetentionMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(RetentionMode::parse("everything"), None);
    }

    #[test]
    fn periods() {
        assert_eq!(expires_at(0, 30, 0), 30 * DAY_MS);
        assert_eq!(expires_at(0, 30, 7), 7 * DAY_MS);
        assert_eq!(
            expires_at(0, 30, 60),
            30 * DAY_MS,
            "a plugin never keeps longer"
        );
        assert_eq!(expires_at(0, 400, 0), 90 * DAY_MS);
        assert_eq!(expires_at(5, 0, 0), 5);
        assert_eq!(ip_expires_at(0, 45, i64::MAX), 30 * DAY_MS);
        assert_eq!(ip_expires_at(0, 30, 7 * DAY_MS), 7 * DAY_MS);
    }

    #[test]
    fn data_policy() {
        let p = DataPolicy {
            require_zdr: true,
            deny_training: true,
            allowed_regions: vec!["eu".into()],
        };
        assert!(p
            .refuses(false, false, "eu")
            .unwrap()
            .contains("zero data retention"));
        assert!(p.refuses(true, true, "eu").unwrap().contains("train"));
        assert!(p.refuses(true, false, "us").unwrap().contains("regions eu"));
        assert_eq!(p.refuses(true, false, "eu"), None);
        assert!(DataPolicy::default().is_open());
    }
}
