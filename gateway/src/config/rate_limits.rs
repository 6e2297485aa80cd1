//! `[rate_limits]` and `[retention]` from the file over the defaults, checked into their
//! internal settings.

use super::load::ms;
use super::*;

/// `[rate_limits]` over the defaults.
pub(super) fn load(
    f: &schema::RateLimits,
    d: &schema::RateLimits,
) -> Result<crate::ratelimit::RateLimitConfig> {
    use crate::ratelimit::{Limits, OnRedisError, RateLimitConfig};
    let base = RateLimitConfig::default();
    let n = |a: Option<u64>, b: Option<u64>| a.or(b).unwrap_or(0);
    let redis_url = f
        .redis_url
        .clone()
        .or_else(|| d.redis_url.clone())
        .filter(|u| !u.is_empty());
    if let Some(url) = &redis_url {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bail!("rate_limits.redis_url: '{url}' is not a redis:// or rediss:// URL");
        }
    }
    Ok(RateLimitConfig {
        redis_url,
        key_prefix: f
            .key_prefix
            .clone()
            .or_else(|| d.key_prefix.clone())
            .unwrap_or(base.key_prefix),
        redis_timeout: ms(f.redis_timeout_ms, d.redis_timeout_ms, 50),
        on_redis_error: match f
            .on_redis_error
            .as_deref()
            .or(d.on_redis_error.as_deref())
            .unwrap_or("local")
        {
            "local" => OnRedisError::Local,
            "deny" => OnRedisError::Deny,
            other => bail!("rate_limits.on_redis_error: '{other}' is not \"local\" or \"deny\""),
        },
        lease_divisor: f.lease_divisor.or(d.lease_divisor).unwrap_or(8).max(1),
        max_scopes: f
            .max_scopes
            .or(d.max_scopes)
            .unwrap_or(base.max_scopes)
            .max(16),
        default_key: Limits {
            rpm: n(f.default_key_rpm, d.default_key_rpm),
            tpm: n(f.default_key_tpm, d.default_key_tpm),
            concurrent: n(f.default_key_concurrency, d.default_key_concurrency),
        },
        default_org: Limits {
            rpm: n(f.default_org_rpm, d.default_org_rpm),
            tpm: n(f.default_org_tpm, d.default_org_tpm),
            concurrent: n(f.default_org_concurrency, d.default_org_concurrency),
        },
    })
}

/// `[retention]` over the defaults. `[stages] logging` stays the plugin of `metadata-only`
/// unless `[retention.plugins]` names another.
pub(super) fn retention(
    f: &schema::Retention,
    d: &schema::Retention,
    logging: &str,
) -> Result<RetentionSettings> {
    use crate::retention::RetentionMode;
    let mut plugins = BTreeMap::from([
        (RetentionMode::RetainAll, "retention-retain-all".to_string()),
        (RetentionMode::MetadataOnly, logging.to_string()),
        (RetentionMode::Zero, "retention-zero".to_string()),
    ]);
    for table in [&d.plugins, &f.plugins].into_iter().flatten() {
        for (mode, plugin) in table {
            let Some(m) = RetentionMode::parse(mode) else {
                bail!(
                    "retention.plugins: '{mode}' is not a retention mode (retain-all, metadata-only, zero)"
                );
            };
            if plugin.is_empty() {
                bail!("retention.plugins.{mode}: the plugin name is empty");
            }
            plugins.insert(m, plugin.clone());
        }
    }
    let max_content_bytes = f
        .max_content_bytes
        .or(d.max_content_bytes)
        .unwrap_or(1 << 20);
    if max_content_bytes == 0 {
        bail!("retention.max_content_bytes must be at least 1");
    }
    Ok(RetentionSettings {
        plugins,
        max_content_bytes,
        purge_interval: ms(f.purge_interval_ms, d.purge_interval_ms, 60_000),
        purge_batch: f
            .purge_batch
            .or(d.purge_batch)
            .unwrap_or(500)
            .clamp(1, 100_000),
    })
}
