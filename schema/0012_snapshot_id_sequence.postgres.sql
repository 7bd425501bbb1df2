-- State snapshot IDs from a sequence: an ID needs no commit order, and taking it from the
-- stream_positions counter held that row locked until commit, so a room-event transaction
-- (events position, then a snapshot ID) and createRoom (a snapshot ID, then the events
-- position) could deadlock. nextval() takes no lock that lasts to commit.
CREATE SEQUENCE state_snapshot_ids;
SELECT setval('state_snapshot_ids',
              COALESCE((SELECT position FROM stream_positions WHERE stream = 'state_snapshot_ids'), 0) + 1,
              false);
