-- How far the push evaluator has got through the events stream. It moves in the same
-- transaction that records an event's notifications, so after a crash the events between
-- it and the end of the stream are evaluated at startup, each exactly once.
CREATE TABLE push_position (
    id SMALLINT PRIMARY KEY,
    evaluated_upto BIGINT NOT NULL
);
-- An existing server starts at the end of the stream: its events were evaluated (or lost)
-- before the position existed, and evaluating them again could count them twice.
INSERT INTO push_position (id, evaluated_upto)
SELECT 1, COALESCE(MAX(stream_ordering), 0) FROM events;
