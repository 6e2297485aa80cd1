-- Retention, data policy and deletion (issue 10). See migrations/sqlite/0011_retention.sql for
-- what each column means; the two schemas are kept column for column.
ALTER TABLE orgs ADD COLUMN ip_retention_days BIGINT NOT NULL DEFAULT 30;
ALTER TABLE orgs ADD COLUMN key_retention_override BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN require_zdr BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN deny_training BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN allowed_regions TEXT NOT NULL DEFAULT '';
ALTER TABLE orgs ADD COLUMN deleted_at BIGINT;

ALTER TABLE api_keys ADD COLUMN retention_mode TEXT;

ALTER TABLE usage_events ADD COLUMN expires_at BIGINT;
ALTER TABLE usage_events ADD COLUMN ip_expires_at BIGINT;
-- The export pages through an org's rows by (created_at, request_id): one index range scan
-- per page with the id in the index (it replaces the (org_id, created_at) index).
DROP INDEX usage_events_org_time;
CREATE INDEX usage_events_org_time ON usage_events(org_id, created_at, request_id);
CREATE INDEX usage_events_expires ON usage_events(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX usage_events_ip_expires ON usage_events(ip_expires_at) WHERE client_ip IS NOT NULL;

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

-- Append-only with one deliberate exception: erasing an entry of a deleted org (actor, target
-- and details replaced, org_id moved to the tombstone, time and action kept). DELETE and
-- TRUNCATE stay refused.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
       AND NEW.actor = 'erased' AND NEW.target = 'erased' AND NEW.details = '{}'
       AND left(NEW.org_id, 4) = 'del_' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
