"""The PDU model and its pure algorithms: canonical JSON, hashes, signatures, event IDs,
redaction and the room-version table. No I/O lives here."""
