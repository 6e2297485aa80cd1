-- Route traces (issue 11): the policy route that served a request, every candidate offered or
-- skipped (and why) and each attempt, as JSON. NULL for requests recorded before.
ALTER TABLE usage_events ADD COLUMN route TEXT;
