-- Noise control of a notification consumer (`aggregate`, `rateLimit`): its open groups and
-- recent message times as JSON, saved in the same transaction as the cursor so events folded
-- into a summary not yet sent survive a restart.
ALTER TABLE consumers ADD COLUMN noise text;
