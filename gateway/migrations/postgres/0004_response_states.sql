-- Stored Responses API conversations (`store: true`), continued with `previous_response_id`.
-- `response` is the Response JSON as returned to the client; `messages` the JSON array of the
-- whole conversation's canonical chat messages up to and including this response's output.
-- No foreign key on org_id: an auth plugin may vouch for orgs this database does not list.
-- Rows past expires_at are invisible to reads and purged in batches.
CREATE TABLE response_states (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    response TEXT NOT NULL,
    messages TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX response_states_expires ON response_states(expires_at);
