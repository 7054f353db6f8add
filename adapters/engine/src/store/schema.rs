//! The database schema as versioned migrations.

/// The schema, one step per version: `PRAGMA user_version` says how many have been applied.
/// Steps are only ever appended, never edited, so every older file upgrades in order.
pub(super) const MIGRATIONS: &[&str] = &[
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
];
