-- BYOK (issue 9): an org's own provider keys, one per (org, provider), sealed with AES-256-GCM
-- under the gateway's master key. Only the ciphertext (base64, GCM tag included) is stored: no
-- prefix, suffix or hash of the key. The associated data binds each ciphertext to its row
-- (org_id, provider, id); master_key_id (first 16 hex digits of the master key's SHA-256) says
-- which master sealed it, so rotation can resume and a wrong master is reported as such.
CREATE TABLE provider_credentials (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, provider)
);
CREATE INDEX provider_credentials_master ON provider_credentials(master_key_id);

-- Whose key goes first for providers the org has a key for: 'prefer' (the org's, then the
-- gateway's), 'fallback' (the gateway's, then the org's), 'only' (the org's alone).
ALTER TABLE orgs ADD COLUMN byok_mode TEXT NOT NULL DEFAULT 'prefer'
    CHECK (byok_mode IN ('prefer', 'fallback', 'only'));
