-- Placeholder replaced by the accounts schema.
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY);
