/**
 * Journal schema, one entry per version. PRAGMA user_version records how many have been applied;
 * each runs in its own transaction so that a crash mid-migration leaves the previous version intact.
 * Never edit a shipped migration: add a new one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: sources, destinations, files, per-destination copies, ingest runs, group naming decisions.
  `
  CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    details TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
  );
  CREATE TABLE destinations (
    id INTEGER PRIMARY KEY,
    marker_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    volume_uuid TEXT,
    created_at TEXT NOT NULL
  );
  CREATE TABLE ingests (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    sources TEXT NOT NULL,
    destinations TEXT NOT NULL,
    summary TEXT
  );
  -- One row per source file version: the plan's identity is (source, path, size, mtime).
  CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    rel_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    sha256 TEXT,
    xxh128 TEXT,
    state TEXT NOT NULL,
    error TEXT,
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (source_id, rel_path, size, mtime_ms)
  );
  -- One row per file per destination.
  CREATE TABLE copies (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    dest_id INTEGER NOT NULL REFERENCES destinations(id),
    state TEXT NOT NULL,
    dest_path TEXT,
    temp_path TEXT,
    size INTEGER,
    sha256 TEXT,
    xxh128 TEXT,
    -- Every value computed for this copy, keyed by algorithm name (sha256, xxh128, xxh64, md5).
    hashes TEXT,
    readback TEXT,
    dedup INTEGER NOT NULL DEFAULT 0,
    manifest_seq INTEGER,
    error TEXT,
    ingest_id INTEGER REFERENCES ingests(id),
    updated_at TEXT NOT NULL,
    UNIQUE (file_id, dest_id)
  );
  CREATE INDEX copies_content ON copies (dest_id, xxh128) WHERE state = 'verified';
  CREATE INDEX copies_manifest ON copies (dest_id) WHERE state = 'verified' AND manifest_seq IS NULL;
  CREATE INDEX copies_state ON copies (state);
  -- Naming decided once per RAW+JPEG(+sidecar) group, so that a resumed ingest puts the rest of a
  -- group beside the members already copied.
  CREATE TABLE group_names (
    source_id INTEGER NOT NULL REFERENCES sources(id),
    group_key TEXT NOT NULL,
    dest_id INTEGER NOT NULL REFERENCES destinations(id),
    fields TEXT NOT NULL,
    suffix INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, group_key, dest_id)
  );
  `,
  // 2: the upload queue (one row per file and S3 target), resumable multipart state, and pruned local copies.
  `
  CREATE TABLE upload_queue (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    bucket TEXT NOT NULL,
    -- The s3://bucket/prefix the file was queued for; with file_id it identifies the request.
    prefix TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    xxh128 TEXT,
    -- Lower goes first (JPEGs and previews before RAW, by the configured extension order).
    priority INTEGER NOT NULL,
    -- queued | uploading | uploaded | failed
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Epoch milliseconds: a queued row is not tried before then (backoff after a failure).
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    last_error_code TEXT,
    last_error_at TEXT,
    -- The local copy whose bytes were uploaded and verified.
    copy_id INTEGER REFERENCES copies(id),
    etag TEXT,
    enqueued_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    uploaded_at TEXT,
    UNIQUE (bucket, key),
    UNIQUE (file_id, bucket, prefix)
  );
  CREATE INDEX upload_queue_ready ON upload_queue (state, priority, id);
  CREATE INDEX upload_queue_content ON upload_queue (sha256, size) WHERE state = 'uploaded';
  -- Multipart uploads under way or finished, so that a restart continues from the last recorded part.
  CREATE TABLE upload_multipart (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    part_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
  );
  CREATE TABLE upload_parts (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (bucket, key, upload_id, part_number)
  );
  -- Local copies removed by the retention policy after their file was verified in the cloud
  -- (the copy's own row then has state 'pruned').
  CREATE TABLE copy_prunes (
    copy_id INTEGER PRIMARY KEY REFERENCES copies(id),
    dest_id INTEGER NOT NULL REFERENCES destinations(id),
    dest_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    queue_id INTEGER REFERENCES upload_queue(id),
    pruned_at TEXT NOT NULL
  );
  `,
  // 3: the original bytes of a source path that is not valid UTF-8 (rel_path then shows them escaped).
  `
  ALTER TABLE files ADD COLUMN path_bytes BLOB;
  `,
  // 4: deletions from sources after verification (the wipe policies), one row per attempt.
  `
  CREATE TABLE source_wipes (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    ingest_id INTEGER REFERENCES ingests(id),
    policy TEXT NOT NULL,
    -- How the second read of the source read the file: 'direct' (past the page cache) or 'cached'.
    second_read TEXT NOT NULL,
    -- The hash both reads of the source agreed on.
    xxh128 TEXT NOT NULL,
    -- deleting | deleted | failed
    state TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
  );
  CREATE INDEX source_wipes_file ON source_wipes (file_id);
  `,
  // 5: the shoot's shot numbers ({shot} in the name template): one per shot of a source, shared by its
  // files (RAW, JPEG, sidecars), counted per shoot (job, client and session) across runs.
  `
  CREATE TABLE shot_numbers (
    shoot TEXT NOT NULL,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    group_key TEXT NOT NULL,
    number INTEGER NOT NULL,
    PRIMARY KEY (shoot, source_id, group_key)
  );
  CREATE UNIQUE INDEX shot_numbers_number ON shot_numbers (shoot, number);
  `,
  // 6: a queued file's SHA-256 may be unknown: the upload computes it from the verified local copy before
  // its first request (ingest hashes only xxh128). SQLite cannot drop a NOT NULL, so the table is rebuilt.
  // copy_prunes' rows refer to it and foreign keys are on (they cannot be turned off inside the
  // migration's transaction): they are set aside while the old table is dropped, then put back.
  `
  CREATE TEMP TABLE copy_prunes_v6 AS SELECT * FROM copy_prunes;
  DELETE FROM copy_prunes;
  CREATE TABLE upload_queue_v6 (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    -- NULL until the upload has read the local copy (then xxh128 is what the copy was checked against).
    sha256 TEXT,
    xxh128 TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    last_error_code TEXT,
    last_error_at TEXT,
    copy_id INTEGER REFERENCES copies(id),
    etag TEXT,
    enqueued_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    uploaded_at TEXT,
    UNIQUE (bucket, key),
    UNIQUE (file_id, bucket, prefix),
    CHECK (sha256 IS NOT NULL OR xxh128 IS NOT NULL)
  );
  INSERT INTO upload_queue_v6 (id, file_id, bucket, prefix, key, size, sha256, xxh128, priority, state, attempts, next_attempt_at,
                               last_error, last_error_code, last_error_at, copy_id, etag, enqueued_at, updated_at, uploaded_at)
    SELECT id, file_id, bucket, prefix, key, size, sha256, xxh128, priority, state, attempts, next_attempt_at,
           last_error, last_error_code, last_error_at, copy_id, etag, enqueued_at, updated_at, uploaded_at FROM upload_queue;
  DROP TABLE upload_queue;
  ALTER TABLE upload_queue_v6 RENAME TO upload_queue;
  CREATE INDEX upload_queue_ready ON upload_queue (state, priority, id);
  CREATE INDEX upload_queue_content ON upload_queue (sha256, size) WHERE state = 'uploaded';
  INSERT INTO copy_prunes SELECT * FROM copy_prunes_v6;
  DROP TABLE copy_prunes_v6;
  `,
  // 7: the folders of a destination a run makes temp files in, recorded before the first (a record per
  // folder instead of a copies row per file in flight): what a crash leaves there is removed at the next
  // opening of the destination.
  `
  CREATE TABLE temp_folders (
    dest_id INTEGER NOT NULL REFERENCES destinations(id),
    path TEXT NOT NULL,
    PRIMARY KEY (dest_id, path)
  ) WITHOUT ROWID;
  `,
];
