-- The client API of each request (openai-chat, anthropic-messages, openai-responses,
-- openai-embeddings, gemini) and whether its usage was estimated because the provider reported
-- none. `estimated` is 0/1, as `stream` is. Rows written before this migration were all
-- OpenAI chat completions with reported usage, hence the defaults.
ALTER TABLE usage_events ADD COLUMN format TEXT NOT NULL DEFAULT 'openai-chat';
ALTER TABLE usage_events ADD COLUMN estimated BIGINT NOT NULL DEFAULT 0;
