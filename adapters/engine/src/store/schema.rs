//! The database schemas as versioned migrations, one list per backend. Steps are only ever
//! appended, never edited, so every older database upgrades in order.

/// SQLite's schema, one step per version: `PRAGMA user_version` says how many have been applied.
pub(super) const SQLITE: &[&str] = &[
    // 1: the registry, the commands sent and the results received.
    "CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        node_name TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        start_time TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        registered INTEGER NOT NULL DEFAULT 0,
        register_json TEXT,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        status_changed_ms INTEGER NOT NULL,
        last_heartbeat_ms INTEGER,
        uptime INTEGER,
        cpu_centipercent INTEGER,
        memory_mb INTEGER,
        threads INTEGER,
        metrics_json TEXT,
        heartbeats INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE commands (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        parameters TEXT NOT NULL,
        target TEXT NOT NULL,
        expected TEXT NOT NULL,
        sent_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        node_name TEXT NOT NULL,
        command TEXT NOT NULL,
        success INTEGER NOT NULL,
        message TEXT NOT NULL,
        data TEXT,
        state TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    );
    -- A node may publish a final result twice (QoS 1 redelivery); history keeps one.
    CREATE UNIQUE INDEX results_final ON results (request_id, instance_id) WHERE state = 'done';
    CREATE INDEX results_by_request ON results (request_id);
    CREATE INDEX commands_by_time ON commands (sent_ms);",
    // 2: when the last register message arrived (reconnect storms are measured with it).
    "ALTER TABLE instances ADD COLUMN registered_ms INTEGER;",
    // 3: bounded history. `orphan` marks results for a request id no command here has (kept
    // up to a cap); a progress update redelivered by QoS 1 is kept once, like a final result.
    "ALTER TABLE results ADD COLUMN orphan INTEGER NOT NULL DEFAULT 0;
    UPDATE results SET orphan = 1 WHERE request_id NOT IN (SELECT request_id FROM commands);
    DELETE FROM results WHERE state != 'done' AND id NOT IN
        (SELECT MIN(id) FROM results WHERE state != 'done' GROUP BY request_id, instance_id, timestamp, message);
    CREATE UNIQUE INDEX results_progress ON results (request_id, instance_id, timestamp, message)
        WHERE state != 'done';
    CREATE INDEX results_orphans ON results (id) WHERE orphan = 1;",
    // 4: an instance's own history (the console's instance page).
    "CREATE INDEX results_by_instance ON results (instance_id, request_id);",
    // 5: revisions, so a writer can read what others changed since it last looked.
    "CREATE TABLE subnode_meta (rev INTEGER NOT NULL);
    INSERT INTO subnode_meta (rev) VALUES (0);
    ALTER TABLE instances ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;",
    // 6: staged rollouts: each wave is a command of its own, naming its rollout and wave number.
    "ALTER TABLE commands ADD COLUMN rollout_id TEXT;
    ALTER TABLE commands ADD COLUMN wave INTEGER;",
];

/// PostgreSQL's schema, in the `subnode` schema of the database, one step per version:
/// `subnode_meta.version` says how many have been applied. The same tables as SQLite's, every
/// integer 64-bit (flags are 0 or 1), `commands.seq` standing in for SQLite's `rowid`, and the
/// progress index over a hash of the node's texts, which may be longer than an index entry.
/// `instances` is rewritten by every flush: room left in its pages (and no index on what a
/// flush changes, `rev` included) lets PostgreSQL update rows in place.
pub(super) const POSTGRES: &[&str] = &[
    // 1: everything SQLite's five steps make.
    "CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        node_name TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        pid BIGINT NOT NULL DEFAULT 0,
        start_time TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        registered BIGINT NOT NULL DEFAULT 0,
        register_json TEXT,
        first_seen_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        status_changed_ms BIGINT NOT NULL,
        last_heartbeat_ms BIGINT,
        uptime BIGINT,
        cpu_centipercent BIGINT,
        memory_mb BIGINT,
        threads BIGINT,
        metrics_json TEXT,
        heartbeats BIGINT NOT NULL DEFAULT 0,
        registered_ms BIGINT,
        rev BIGINT NOT NULL DEFAULT 0
    ) WITH (fillfactor = 70);
    CREATE TABLE commands (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        parameters TEXT NOT NULL,
        target TEXT NOT NULL,
        expected TEXT NOT NULL,
        sent_ms BIGINT NOT NULL,
        attempts BIGINT NOT NULL
    );
    CREATE INDEX commands_by_time ON commands (sent_ms, seq);
    CREATE TABLE results (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        node_name TEXT NOT NULL,
        command TEXT NOT NULL,
        success BIGINT NOT NULL,
        message TEXT NOT NULL,
        data TEXT,
        state TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        orphan BIGINT NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX results_final ON results (request_id, instance_id) WHERE state = 'done';
    CREATE UNIQUE INDEX results_progress ON results (request_id, instance_id, md5(timestamp || ' ' || message))
        WHERE state != 'done';
    CREATE INDEX results_by_request ON results (request_id);
    CREATE INDEX results_orphans ON results (id) WHERE orphan = 1;
    CREATE INDEX results_by_instance ON results (instance_id, request_id);",
    // 2: SQLite's 6, staged rollouts.
    "ALTER TABLE commands ADD COLUMN rollout_id TEXT;
    ALTER TABLE commands ADD COLUMN wave BIGINT;",
];
