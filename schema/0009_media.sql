-- The media repository (spec: "Content repository"). File bodies live on disk under
-- media_store_path, named by their sha256 so identical files are stored once; these
-- tables hold the metadata, and a body is deleted when no row names its sha256.

-- Media uploaded to this server. A row created by POST /media/v1/create has a NULL
-- sha256 until its body arrives with PUT /upload/{serverName}/{mediaId}.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    uploader TEXT NOT NULL,
    content_type TEXT,
    -- NULL while pending (async upload not done yet).
    size BIGINT,
    filename TEXT,
    created_ts BIGINT NOT NULL,
    sha256 TEXT,
    -- Async uploads: the body must arrive before this time (ms); NULL once uploaded.
    unused_expires_ts BIGINT
);
-- Per-user quota sums and pending-upload counts.
CREATE INDEX local_media_uploader ON local_media (uploader);
CREATE INDEX local_media_sha256 ON local_media (sha256);

-- Media fetched from other servers (filled once federation fetches media); purged by
-- age of last access.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    size BIGINT NOT NULL,
    filename TEXT,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_last_access ON remote_media (last_access_ts);
CREATE INDEX remote_media_sha256 ON remote_media (sha256);

-- Thumbnails of local and remote media (origin is this server's name for local media).
-- `animated` is 0/1 (no BOOLEAN columns: one type on both engines).
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
