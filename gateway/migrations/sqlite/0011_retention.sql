-- Retention, data policy and deletion (issue 10).
--
-- orgs: `retention_mode` ('retain-all' | 'metadata-only' | 'zero') and `retention_days` (0-90)
-- existed; `ip_retention_days` (0-30) bounds how long a stored client IP is kept;
-- `key_retention_override` lets the org's keys choose their own mode; the data policy
-- (`require_zdr`, `deny_training`, `allowed_regions` comma-separated, '' = any) restricts the
-- providers routing may use; `deleted_at` marks a tombstone org (the anonymised owner of a
-- deleted org's usage and ledger rows).
ALTER TABLE orgs ADD COLUMN ip_retention_days BIGINT NOT NULL DEFAULT 30;
ALTER TABLE orgs ADD COLUMN key_retention_override BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN require_zdr BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN deny_training BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN allowed_regions TEXT NOT NULL DEFAULT '';
ALTER TABLE orgs ADD COLUMN deleted_at BIGINT;

-- A key's own retention mode (NULL: the org's), honoured only when the org allows it.
ALTER TABLE api_keys ADD COLUMN retention_mode TEXT;

-- When the purge deletes the usage row (NULL: never, e.g. a tombstone org's anonymised rows)
-- and when it nulls the client IP stored with it.
ALTER TABLE usage_events ADD COLUMN expires_at BIGINT;
ALTER TABLE usage_events ADD COLUMN ip_expires_at BIGINT;
-- The export pages through an org's rows by (created_at, request_id): one index range scan
-- per page with the id in the index (it replaces the (org_id, created_at) index).
DROP INDEX usage_events_org_time;
CREATE INDEX usage_events_org_time ON usage_events(org_id, created_at, request_id);
CREATE INDEX usage_events_expires ON usage_events(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX usage_events_ip_expires ON usage_events(ip_expires_at) WHERE client_ip IS NOT NULL;

-- Request and response content, stored only when the logging stage decided so (retain-all).
-- The response is what the client received (the event stream's text when streamed), capped
-- by `[retention] max_content_bytes` (`truncated` = 1 when cut).
CREATE TABLE request_content (
    request_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    request_body TEXT NOT NULL,
    response_body TEXT NOT NULL,
    truncated BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX request_content_expires ON request_content(expires_at);
CREATE INDEX request_content_org ON request_content(org_id, created_at);

-- The audit log stays append-only with one deliberate exception: erasing an entry of a deleted
-- org (actor, target and details replaced, org_id moved to the tombstone, time and action kept).
DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT (NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
          AND NEW.actor = 'erased' AND NEW.target = 'erased' AND NEW.details = '{}'
          AND substr(NEW.org_id, 1, 4) = 'del_')
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
