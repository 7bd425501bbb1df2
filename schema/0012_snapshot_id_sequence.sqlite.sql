-- Nothing to do on SQLite: its single writer serialises transactions, so the
-- stream_positions counter cannot deadlock there (see the .postgres.sql variant).
SELECT 1;
