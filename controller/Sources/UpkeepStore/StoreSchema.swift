import GRDB

/// The database schema, one migration per version. Times are Unix milliseconds (the runtime's
/// `Instant`); JSON columns hold the Codable values of `UpkeepRollout` with sorted keys.
enum StoreSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE rollouts (
                    id TEXT PRIMARY KEY NOT NULL,
                    created_at INTEGER NOT NULL,
                    started_at INTEGER,
                    finished_at INTEGER,
                    from_summary TEXT NOT NULL,
                    target TEXT NOT NULL,
                    plan_json TEXT NOT NULL,
                    policy_json TEXT NOT NULL,
                    -- notStarted, running, stopping, blocked, finished: for queries; status_json is the truth.
                    status TEXT NOT NULL,
                    status_json TEXT NOT NULL,
                    -- completed, rolledBack, failed once finished.
                    outcome TEXT,
                    engine_json TEXT NOT NULL,
                    transitions INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX rollouts_created ON rollouts(created_at);
                CREATE TABLE transitions (
                    rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
                    sequence INTEGER NOT NULL,
                    at INTEGER NOT NULL,
                    event TEXT NOT NULL,
                    actions TEXT NOT NULL,
                    PRIMARY KEY (rollout_id, sequence)
                ) WITHOUT ROWID;
                CREATE TABLE steps (
                    rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
                    ordinal INTEGER NOT NULL,
                    move_key TEXT NOT NULL,
                    node TEXT NOT NULL,
                    rollback INTEGER NOT NULL,
                    from_version TEXT NOT NULL,
                    to_version TEXT NOT NULL,
                    stage TEXT NOT NULL,
                    phase TEXT NOT NULL,
                    started_at INTEGER,
                    finished_at INTEGER,
                    progress_json TEXT NOT NULL,
                    PRIMARY KEY (rollout_id, move_key)
                ) WITHOUT ROWID;
                CREATE INDEX steps_node ON steps(node);
                CREATE TABLE notices (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
                    sequence INTEGER NOT NULL,
                    at INTEGER NOT NULL,
                    level TEXT NOT NULL,
                    node TEXT,
                    message TEXT NOT NULL
                );
                CREATE INDEX notices_rollout ON notices(rollout_id, id);
                CREATE TABLE lease (
                    name TEXT PRIMARY KEY NOT NULL,
                    holder TEXT NOT NULL,
                    acquired_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    ttl_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2") { db in
            // Sealed datastore backups (the files live in <stateDir>/backups).
            try db.execute(sql: """
                CREATE TABLE backups (
                    id TEXT PRIMARY KEY NOT NULL,
                    rollout_id TEXT,
                    taken_at INTEGER NOT NULL,
                    node TEXT NOT NULL,
                    format TEXT NOT NULL,
                    agent_file TEXT NOT NULL,
                    path TEXT NOT NULL,
                    bytes INTEGER NOT NULL,
                    sha256 TEXT NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX backups_taken ON backups(taken_at);
                """)
        }
        migrator.registerMigration("v3") { db in
            // Component updates through Git (`upkeep update`): one row per attempt.
            try db.execute(sql: """
                CREATE TABLE component_updates (
                    id TEXT PRIMARY KEY NOT NULL,
                    component TEXT NOT NULL,
                    from_version TEXT NOT NULL,
                    to_version TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    file TEXT NOT NULL,
                    started_at INTEGER NOT NULL,
                    finished_at INTEGER,
                    commit_sha TEXT,
                    revert_sha TEXT,
                    -- running, completed, reverted, failed
                    outcome TEXT NOT NULL,
                    message TEXT NOT NULL DEFAULT ''
                ) WITHOUT ROWID;
                CREATE INDEX component_updates_started ON component_updates(started_at);
                """)
        }
        migrator.registerMigration("v4-join-tokens") { db in
            // Bootstrap tokens for `upkeep-agent join` (docs/enrollment.md): the secret only as its
            // SHA-256; one row per enrolled node, so a second join needs --force.
            try db.execute(sql: """
                CREATE TABLE join_tokens (
                    id TEXT PRIMARY KEY NOT NULL,
                    secret_sha256 TEXT NOT NULL,
                    node TEXT,
                    uses_max INTEGER NOT NULL,
                    uses INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    revoked_at INTEGER
                ) WITHOUT ROWID;
                CREATE TABLE enrollments (
                    node TEXT PRIMARY KEY NOT NULL,
                    token_id TEXT NOT NULL,
                    enrolled_at INTEGER NOT NULL,
                    certificate_serial TEXT NOT NULL,
                    not_after INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v5-hop-backups") { db in
            // A snapshot per hop (design-15 section 2): what each backup is for. Backups taken
            // before a rollout by earlier versions count as its first hop's.
            try db.execute(sql: """
                ALTER TABLE backups ADD COLUMN hop INTEGER;
                ALTER TABLE backups ADD COLUMN k3s_version TEXT;
                -- hop, manual or pre-restore
                ALTER TABLE backups ADD COLUMN kind TEXT NOT NULL DEFAULT 'manual';
                UPDATE backups SET kind = 'hop', hop = 1 WHERE rollout_id IS NOT NULL;
                CREATE INDEX backups_rollout ON backups(rollout_id, hop);
                """)
            // The last agent inventory the controller read from the API, so `upkeep recover` can
            // address agents while the API is down.
            try db.execute(sql: """
                CREATE TABLE agent_inventory (
                    node TEXT PRIMARY KEY NOT NULL,
                    role TEXT NOT NULL,
                    etcd INTEGER NOT NULL,
                    arch TEXT NOT NULL,
                    k3s_version TEXT NOT NULL,
                    endpoint TEXT,
                    seen_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v6-notification-outbox") { db in
            // Notifications (docs/notifications.md): one row per event and sink until it is sent
            // or given up. `id` is the event's idempotency key, the same for every sink; a claim
            // (`claimed_by` until `claimed_until`) keeps two deliverers off one sink.
            try db.execute(sql: """
                CREATE TABLE notification_outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL,
                    sink TEXT NOT NULL,
                    event TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    -- pending, sent, dead
                    state TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER NOT NULL,
                    claimed_by TEXT,
                    claimed_until INTEGER,
                    last_error TEXT,
                    finished_at INTEGER,
                    UNIQUE (id, sink)
                );
                CREATE INDEX notification_outbox_sink ON notification_outbox(sink, state, seq);
                CREATE INDEX notification_outbox_state ON notification_outbox(state, seq);
                -- Counters per sink, kept when rows are pruned.
                CREATE TABLE notification_sinks (
                    sink TEXT PRIMARY KEY NOT NULL,
                    sent INTEGER NOT NULL DEFAULT 0,
                    failed INTEGER NOT NULL DEFAULT 0,
                    dropped INTEGER NOT NULL DEFAULT 0,
                    attempts_failed INTEGER NOT NULL DEFAULT 0,
                    last_sent_at INTEGER,
                    last_error TEXT,
                    last_error_at INTEGER
                ) WITHOUT ROWID;
                -- Keys of events told once (an update available, a certificate's expiry).
                CREATE TABLE notification_once (
                    key TEXT PRIMARY KEY NOT NULL,
                    at INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v7-maintenance-mode") { db in
            // Maintenance mode's periods (docs/maintenance.md): each recorded before anything is
            // suspended, with the objects it suspends, so a disable after a crash resumes those.
            try db.execute(sql: """
                CREATE TABLE maintenance_periods (
                    id TEXT PRIMARY KEY NOT NULL,
                    started_at INTEGER NOT NULL,
                    -- enabling, enabled, disabling, ended: for queries; period_json is the truth.
                    state TEXT NOT NULL,
                    period_json TEXT NOT NULL,
                    ended_at INTEGER
                ) WITHOUT ROWID;
                CREATE INDEX maintenance_periods_started ON maintenance_periods(started_at);
                """)
        }
        migrator.registerMigration("v8-operation-actor") { db in
            // Who did what (issue 17, item 9): one row per operation a command or `upkeep serve`
            // started on a rollout (apply, rollback, recover, resume, restore, abandon) or a
            // component update (update), with who started it. Rollouts and updates made before
            // this version have none.
            try db.execute(sql: """
                CREATE TABLE operations (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    -- the rollout or component update it acted on
                    subject TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    initiator_json TEXT NOT NULL
                );
                CREATE INDEX operations_subject ON operations(subject, id);
                """)
            // The cluster Lease's events (conflicts, failed renewals, losses, takeovers), counted
            // for the metrics, which are read from this database.
            try db.execute(sql: """
                CREATE TABLE lease_events (
                    event TEXT PRIMARY KEY NOT NULL,
                    count INTEGER NOT NULL,
                    last_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v9-update-snapshots") { db in
            // The Longhorn snapshots an update took before its commit (issue 18, item 2), one
            // name a line; empty for other components and updates recorded before.
            try db.execute(sql: "ALTER TABLE component_updates ADD COLUMN snapshots TEXT NOT NULL DEFAULT ''")
        }
        migrator.registerMigration("v10-overrides-and-update-backups") { db in
            // Issue 18: what an operator overrode, said with the operation (an
            // `ignore-compatibility` names the table entry it went against), and the datastore
            // backup taken before a Longhorn or Flux update (`backups.beforeUpdate`).
            try db.execute(sql: """
                ALTER TABLE operations ADD COLUMN detail TEXT;
                ALTER TABLE component_updates ADD COLUMN backup_id TEXT;
                """)
        }
        migrator.registerMigration("v11-update-sets") { db in
            // `upkeep apply --all` (issue 18, item 4): the parent record of a set of stages (a k3s
            // rollout, Longhorn and Flux updates), each stage naming the rollout or update it ran as.
            try db.execute(sql: """
                CREATE TABLE update_sets (
                    id TEXT PRIMARY KEY NOT NULL,
                    created_at INTEGER NOT NULL,
                    finished_at INTEGER,
                    -- running, completed, failed: for queries; set_json is the truth.
                    outcome TEXT NOT NULL,
                    set_json TEXT NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX update_sets_created ON update_sets(created_at);
                """)
        }
        migrator.registerMigration("v12-transition-events") { db in
            // Issue 20, item 3: a transition writes what changed. Each keeps the event it handled
            // (`event_json`, a look at the cluster as its change from the one before), and the
            // engine is kept whole only now and then (`engine_snapshots`, one per rollout); the
            // engine is its snapshot with the events after it replayed. `journal_bytes`: what
            // was written since the snapshot, which is taken again once that passes its size.
            // A rollout recorded before keeps its engine as its snapshot at its last transition.
            try db.execute(sql: """
                ALTER TABLE transitions ADD COLUMN event_json TEXT;
                CREATE TABLE engine_snapshots (
                    rollout_id TEXT PRIMARY KEY NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
                    sequence INTEGER NOT NULL,
                    engine_json TEXT NOT NULL
                );
                ALTER TABLE rollouts ADD COLUMN snapshot_bytes INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE rollouts ADD COLUMN journal_bytes INTEGER NOT NULL DEFAULT 0;
                INSERT INTO engine_snapshots (rollout_id, sequence, engine_json) SELECT id, transitions, engine_json FROM rollouts;
                UPDATE rollouts SET snapshot_bytes = length(CAST(engine_json AS BLOB)), engine_json = '';
                """)
        }
        migrator.registerMigration("v13-rollout-plans") { db in
            // Issue 20: every transition reads and rewrites its rollout's row (the count, the
            // status), and SQLite reads the whole row to rewrite it, overflow pages included: a
            // plan of a 5,000-node rollout (megabytes) in that row made each transition cost the
            // rollout's size. The plan and the policy, written once, live in a row of their own.
            try db.execute(sql: """
                CREATE TABLE rollout_plans (
                    rollout_id TEXT PRIMARY KEY NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
                    plan_json TEXT NOT NULL,
                    policy_json TEXT NOT NULL
                );
                INSERT INTO rollout_plans (rollout_id, plan_json, policy_json) SELECT id, plan_json, policy_json FROM rollouts;
                UPDATE rollouts SET plan_json = '', policy_json = '';
                """)
        }
        return migrator
    }
}
