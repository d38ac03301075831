import Foundation
import GRDB
import Testing
import UpkeepRollout
import UpkeepCore
import UpkeepRuntimeTestSupport
@testable import UpkeepStore
import UpkeepTestSupport

@Suite struct StateStoreTests {
    static let t0 = Instant(milliseconds: 1_790_000_000_000)
    static let ttl: Int64 = 30_000

    /// Opens a store and takes the lease for `holder` at `t0`.
    static func store(_ directory: TemporaryDirectory, holder: String = "controller-a") throws -> StateStore {
        let store = try StateStore(stateDirectory: directory.file("state"))
        try store.acquireLease(holder: holder, ttlMilliseconds: ttl, now: t0)
        return store
    }

    /// Creates `engine` and records every transition of driving it against `world`, one second apart.
    @discardableResult
    static func run(_ engine: RolloutEngine, world: inout WorldModel, in store: StateStore, holder: String = "controller-a",
                    from start: Instant = t0) throws -> RolloutEngine {
        try store.acquireLease(holder: holder, ttlMilliseconds: ttl, now: start)
        try store.createRollout(engine, holder: holder, now: start)
        var before = engine
        var now = start
        for (event, after, actions) in RolloutFixtures.drive(engine, world: &world) {
            now = now.adding(milliseconds: 1000)
            try store.acquireLease(holder: holder, ttlMilliseconds: ttl, now: now)
            try store.record(transition(after, before: before, event, actions), holder: holder, now: now)
            before = after
        }
        return before
    }

    static func transition(_ engine: RolloutEngine, before: RolloutEngine, _ event: RolloutEngine.Event,
                           _ actions: [RolloutEngine.Action]) -> Transition {
        let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
        return Transition(engine: engine, before: before, event: "\(event)", actions: "\(actions.count) actions", notices: notices)
    }

    static func mode(_ path: String) throws -> Int {
        try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func theStateDirectoryAndDatabaseFilesArePrivate() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.file("loose"), withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o755])
        for state in [directory.file("nested/state"), directory.file("loose")] {
            let store = try StateStore(stateDirectory: state)
            try store.acquireLease(holder: "controller-a", ttlMilliseconds: Self.ttl, now: Self.t0)
            #expect(try Self.mode(state) == 0o700)
            #expect(try Self.mode(state + "/upkeep.db") == 0o600)
            #expect(try Self.mode(state + "/upkeep.db-wal") == 0o600)
            #expect(try store.pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
        }
        let file = try directory.write("not a directory", to: "file")
        #expect(throws: StoreError.stateDirectory(path: file, reason: "it is a file, not a directory")) {
            try StateStore(stateDirectory: file)
        }
    }

    @Test func aRecordedTransitionReadsBackAsTheSameEngineThroughAnotherConnection() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        let created = try RolloutFixtures.engine("r1")
        try store.createRollout(created, holder: "controller-a", now: Self.t0)
        var started = created
        let actions = started.handle(.start, now: Self.t0.adding(milliseconds: 5))
        let sequence = try store.record(Self.transition(started, before: created, .start, actions), holder: "controller-a",
                                        now: Self.t0.adding(milliseconds: 5))
        #expect(sequence == 1)

        let other = try StateStore(stateDirectory: directory.file("state"))
        #expect(try other.engine(rolloutID: "r1") == started)
        #expect(try other.resumableEngine() == started)
        let detail = try other.rollout(id: "r1")
        #expect(detail.record.status == .running && detail.record.startedAt == Self.t0.adding(milliseconds: 5))
        #expect(detail.record.from == "v1.31.2+k3s1 (3 nodes)" && detail.record.target == RolloutFixtures.target)
        #expect(detail.plan == created.plan && detail.policy == created.policy && detail.transitionCount == 1)
        #expect(detail.notices.map(\.notice.message).first?.hasPrefix("rollout r1: ") == true)
        #expect(detail.record.steps.map(\.node) == ["server-1", "agent-1", "agent-2"])
        #expect(detail.record.steps.allSatisfy { $0.progress.stage == .waiting && $0.startedAt == nil })
        #expect(try other.transitions(rolloutID: "r1").map(\.event) == ["start"])
    }

    @Test func historyListsRolloutsNewestFirstWithEachNodesOutcome() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        var world = RolloutFixtures.world()
        let completed = try Self.run(RolloutFixtures.engine("r1", world: world), world: &world, in: store)
        #expect(completed.status == .finished(.completed))

        var failing = world
        failing.failingInstalls["agent-2"] = RolloutFixtures.version("v1.31.6+k3s1")
        let later = Self.t0.adding(milliseconds: Self.hour)
        let rollBackPlan = try Planner.plan(inventory: failing.inventory, target: RolloutFixtures.version("v1.31.6+k3s1"),
                                            available: RolloutFixtures.offered + [RolloutFixtures.version("v1.31.6+k3s1")],
                                            policy: PlanPolicy(agentConcurrency: 1))
        let rolledBack = try Self.run(RolloutEngine(rolloutID: "r2", plan: rollBackPlan, policy: RolloutFixtures.policy()),
                                      world: &failing, in: store, from: later)
        guard case .finished(.rolledBack) = rolledBack.status else {
            Issue.record("expected a rollback, got \(rolledBack.status)")
            return
        }

        let history = try store.history(limit: 10)
        #expect(history.map(\.id) == ["r2", "r1"])
        #expect(history[1].outcome == .completed && history[1].finishedAt != nil)
        #expect(history[1].steps.map { "\($0.node) \($0.progress.stage)" } == ["server-1 done", "agent-1 done", "agent-2 done"])
        #expect(history[1].steps.allSatisfy { step in
            guard let started = step.startedAt, let finished = step.finishedAt else { return false }
            return started < finished
        })
        // agent-2 failed and was reverted by its agent; agent-1, then server-1, went back in reverse order.
        let steps = history[0].steps.map { "\($0.progress.isRollback ? "back" : "forward") \($0.node) \($0.progress.stage)" }
        #expect(steps == ["forward server-1 done", "forward agent-1 done", "forward agent-2 reverted", "back agent-1 done", "back server-1 done"])
        let back = history[0].steps.filter { $0.progress.isRollback }
        #expect(back[0].finishedAt.map { finished in back[1].startedAt.map { finished <= $0 } ?? false } == true)
        #expect(try store.history(limit: 1).map(\.id) == ["r2"])
        #expect(try store.history(limit: 10, since: later).map(\.id) == ["r2"])
        let detail = try store.rollout(id: "r2")
        #expect(detail.notices.contains { $0.notice.level == .error && $0.notice.node == "agent-2" })
        #expect(detail.transitionCount == (try store.transitions(rolloutID: "r2")).count)
    }

    static let hour: Int64 = 3_600_000

    @Test func oneUnfinishedRolloutAtATimeAndResumeFindsIt() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        #expect(throws: StoreError.nothingToResume) { try store.resumableEngine() }
        let first = try RolloutFixtures.engine("r1")
        try store.createRollout(first, holder: "controller-a", now: Self.t0)
        #expect(throws: StoreError.unfinishedRollout(id: "r1", status: "notStarted")) {
            try store.createRollout(try RolloutFixtures.engine("r2"), holder: "controller-a", now: Self.t0)
        }
        #expect(throws: StoreError.rolloutExists("r1")) { try store.createRollout(first, holder: "controller-a", now: Self.t0) }
        #expect(try store.resumableEngine() == first)
        #expect(try store.unfinishedRollout()?.id == "r1")
        #expect(throws: StoreError.unknownRollout("r9")) { try store.rollout(id: "r9") }
    }

    @Test func aFinishedRolloutIsNotResumed() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        var world = RolloutFixtures.world()
        try Self.run(RolloutFixtures.engine("r1", world: world), world: &world, in: store)
        #expect(throws: StoreError.nothingToResume) { try store.resumableEngine() }
        #expect(throws: StoreError.rolloutFinished(id: "r1", outcome: "completed")) { try store.resumableEngine(rolloutID: "r1") }
        #expect(try store.unfinishedRollout() == nil)
    }

    @Test func aSecondControllerIsRefusedUntilTheLeaseExpiresThenTakesItOver() throws {
        let directory = try TemporaryDirectory()
        let first = try Self.store(directory, holder: "controller-a")
        let second = try StateStore(stateDirectory: directory.file("state"))
        let until = Self.t0.adding(milliseconds: Self.ttl)
        #expect(throws: StoreError.leaseHeld(holder: "controller-a", until: until)) {
            try second.acquireLease(holder: "controller-b", ttlMilliseconds: Self.ttl, now: Self.t0.adding(milliseconds: 10_000))
        }
        let message = StoreError.leaseHeld(holder: "controller-a", until: until).description
        #expect(message.contains("holder controller-a") && message.contains("--force-takeover") && message.contains("until 2026-09-21T14:13:50Z"))

        // Renewing moves the expiry; the second controller stays out until then.
        let renewed = try first.renewLease(holder: "controller-a", now: Self.t0.adding(milliseconds: 20_000))
        #expect(renewed.expiresAt == Self.t0.adding(milliseconds: 50_000) && renewed.acquiredAt == Self.t0)
        #expect(throws: StoreError.leaseHeld(holder: "controller-a", until: renewed.expiresAt)) {
            try second.acquireLease(holder: "controller-b", ttlMilliseconds: Self.ttl, now: Self.t0.adding(milliseconds: 49_999))
        }
        // Stale: taken over after its TTL, and the old holder learns it lost the lease.
        let taken = try second.acquireLease(holder: "controller-b", ttlMilliseconds: Self.ttl, now: renewed.expiresAt)
        #expect(taken.holder == "controller-b" && taken.acquiredAt == renewed.expiresAt)
        #expect(throws: StoreError.leaseLost(holder: "controller-a", current: "controller-b")) {
            try first.renewLease(holder: "controller-a", now: renewed.expiresAt.adding(milliseconds: 1))
        }
        #expect(throws: StoreError.leaseLost(holder: "controller-a", current: "controller-b")) {
            try first.createRollout(try RolloutFixtures.engine("r1"), holder: "controller-a", now: renewed.expiresAt)
        }
        // Releasing someone else's lease does nothing; releasing one's own frees it.
        try first.releaseLease(holder: "controller-a")
        #expect(try first.currentLease()?.holder == "controller-b")
        try second.releaseLease(holder: "controller-b")
        #expect(try first.currentLease() == nil)
    }

    @Test func anOwnLeaseThatExpiredIsLostEvenIfNobodyTookIt() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        #expect(throws: StoreError.leaseLost(holder: "controller-a", current: nil)) {
            try store.renewLease(holder: "controller-a", now: Self.t0.adding(milliseconds: Self.ttl))
        }
    }

    @Test func forceTakeoverTakesALiveLeaseAndFencesTheOldHolder() throws {
        let directory = try TemporaryDirectory()
        let first = try Self.store(directory, holder: "controller-a")
        try first.createRollout(try RolloutFixtures.engine("r1"), holder: "controller-a", now: Self.t0)
        let second = try StateStore(stateDirectory: directory.file("state"))
        try second.acquireLease(holder: "controller-b", ttlMilliseconds: Self.ttl, now: Self.t0.adding(milliseconds: 1), forceTakeover: true)
        var engine = try first.engine(rolloutID: "r1")
        let before = engine
        let actions = engine.handle(.start, now: Self.t0.adding(milliseconds: 2))
        #expect(throws: StoreError.leaseLost(holder: "controller-a", current: "controller-b")) {
            try first.record(Self.transition(engine, before: before, .start, actions), holder: "controller-a", now: Self.t0.adding(milliseconds: 2))
        }
        #expect(try second.engine(rolloutID: "r1") == before)
        #expect(try second.rollout(id: "r1").transitionCount == 0)
    }

    @Test func contendingControllersOnTwoConnectionsGetTheLeaseExactlyOnce() throws {
        let directory = try TemporaryDirectory()
        let stores = [try StateStore(stateDirectory: directory.file("state")), try StateStore(stateDirectory: directory.file("state"))]
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            do {
                try stores[index % 2].acquireLease(holder: "controller-\(index)", ttlMilliseconds: Self.ttl, now: Self.t0)
                results.add("won controller-\(index)")
            } catch let error as StoreError {
                if case .leaseHeld = error { results.add("refused") } else { results.add("\(error)") }
            } catch {
                results.add("\(error)")
            }
        }
        let outcomes = results.all
        #expect(outcomes.filter { $0.hasPrefix("won ") }.count == 1, "outcomes: \(outcomes)")
        #expect(outcomes.filter { $0 == "refused" }.count == 7, "outcomes: \(outcomes)")
        let winner = try #require(outcomes.first { $0.hasPrefix("won ") }).dropFirst(4)
        #expect(try stores[0].currentLease()?.holder == String(winner))
    }

    @Test func aTransactionCutOffBeforeItsCommitLeavesTheLastCommittedStateReadable() throws {
        let directory = try TemporaryDirectory()
        let writer = try Self.store(directory)
        let created = try RolloutFixtures.engine("r1")
        try writer.createRollout(created, holder: "controller-a", now: Self.t0)
        let reader = try StateStore(stateDirectory: directory.file("state"))
        let inside = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        struct CutOff: Error {}
        DispatchQueue.global().async {
            _ = try? writer.pool.write { db in
                try db.execute(sql: "UPDATE engine_snapshots SET engine_json = '{broken', sequence = 7 WHERE rollout_id = 'r1'")
                try db.execute(sql: "UPDATE rollouts SET transitions = 7 WHERE id = 'r1'")
                try db.execute(sql: "INSERT INTO transitions (rollout_id, sequence, at, event, actions) VALUES ('r1', 7, 0, 'x', 'y')")
                inside.signal()
                _ = release.wait(timeout: .now() + 30)
                throw CutOff()
            }
            finished.signal()
        }
        #expect(inside.wait(timeout: .now() + 30) == .success, "the writer never entered its transaction")
        #expect(try reader.engine(rolloutID: "r1") == created)
        #expect(try reader.rollout(id: "r1").transitionCount == 0)
        release.signal()
        #expect(finished.wait(timeout: .now() + 30) == .success, "the writer never finished")
        #expect(try reader.engine(rolloutID: "r1") == created)
        #expect(try reader.transitions(rolloutID: "r1").isEmpty)
    }

    @Test func aDatabaseFromANewerUpkeepIsRefused() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        try store.pool.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')") }
        let path = directory.file("state") + "/upkeep.db"
        #expect(throws: StoreError.newerSchema(path: path)) { try StateStore(path: path) }
        #expect(StoreError.newerSchema(path: path).description.contains("newer upkeep"))
    }

    @Test func aComponentUpdateIsRecordedBeforeItsPushAndCompletedAfter() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        var record = ComponentUpdateRecord(id: "u1", component: "longhorn", from: "v1.7.2", to: "v1.8.2", repository: "file:///r.git",
                                           file: "infra/longhorn.yaml", startedAt: Self.t0, commit: "abc")
        try store.saveComponentUpdate(record)
        #expect(try store.componentUpdates(limit: 5) == [record])
        record.outcome = .reverted
        record.revertCommit = "def"
        record.finishedAt = Self.t0.adding(seconds: 60)
        try store.saveComponentUpdate(record)
        let other = try StateStore(stateDirectory: directory.file("state"))
        #expect(try other.componentUpdates(limit: 5) == [record], "the second save replaces the first")
    }

    @Test func backupsAreRecordedListedNewestFirstAndForgotten() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        func backup(_ id: String, at seconds: Int64, rollout: String?) -> BackupRecord {
            BackupRecord(id: id, rolloutID: rollout, takenAt: Self.t0.adding(milliseconds: seconds * 1000), node: "server-1",
                         format: "etcdSnapshot", agentFile: "\(id)-server-1-1790000000", path: "/state/backups/\(id)-server-1.upkb",
                         bytes: 4096, sha256: String(repeating: "a", count: 64))
        }
        try store.recordBackup(backup("b1", at: 1, rollout: nil))
        try store.recordBackup(backup("r2", at: 2, rollout: "r2"))
        #expect(throws: StoreError.self, "an id is recorded once") { try store.recordBackup(backup("b1", at: 3, rollout: nil)) }
        // Another connection (another controller process) reads what was committed.
        let other = try StateStore(stateDirectory: directory.file("state"))
        #expect(try other.backups(limit: 10).map(\.id) == ["r2", "b1"])
        #expect(try other.backup(id: "r2") == backup("r2", at: 2, rollout: "r2"))
        #expect(try other.backup(id: "nope") == nil)
        try store.deleteBackups(ids: ["b1"])
        #expect(try other.backups(limit: 10).map(\.id) == ["r2"])
    }

    /// A database written before hop snapshots existed (schema v3, a backup taken before a
    /// rollout) opens: the backup becomes that rollout's hop-1 snapshot, manual ones stay manual,
    /// and the agent inventory starts empty.
    @Test func aDatabaseFromBeforeHopSnapshotsOpensAndKeepsItsBackups() throws {
        let directory = try TemporaryDirectory()
        let state = directory.file("state")
        _ = try StateStore(stateDirectory: state)
        // Back to the schema before hop backups exactly as v3 made its tables, with two backups.
        let database = "\(state)/\(StateStore.fileName)"
        let sql = """
            DROP TABLE agent_inventory;
            DROP INDEX backups_rollout;
            CREATE TABLE backups_v3 (id TEXT PRIMARY KEY NOT NULL, rollout_id TEXT, taken_at INTEGER NOT NULL, node TEXT NOT NULL,
                format TEXT NOT NULL, agent_file TEXT NOT NULL, path TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL) WITHOUT ROWID;
            DROP TABLE backups;
            ALTER TABLE backups_v3 RENAME TO backups;
            CREATE INDEX backups_taken ON backups(taken_at);
            DELETE FROM grdb_migrations WHERE identifier = 'v5-hop-backups';
            INSERT INTO backups VALUES ('r1', 'r1', 1790000000000, 'server-1', 'etcdSnapshot', 'r1-server-1', '/s/r1.upkb', 10, '\(String(repeating: "b", count: 64))');
            INSERT INTO backups VALUES ('b1', NULL, 1790000001000, 'server-2', 'sqliteTar', 'b1-server-2', '/s/b1.upkb', 20, '\(String(repeating: "c", count: 64))');
            """
        let downgraded = try runProcess("/usr/bin/sqlite3", [database, sql])
        #expect(downgraded.status == 0, "\(downgraded.error)")
        let store = try StateStore(stateDirectory: state)
        let hop = try #require(try store.backup(id: "r1"))
        #expect(hop.kind == .hop && hop.hop == 1 && hop.rolloutID == "r1" && hop.k3sVersion == nil)
        let manual = try #require(try store.backup(id: "b1"))
        #expect(manual.kind == .manual && manual.hop == nil)
        #expect(try store.agentInventory().isEmpty)
        let seen = AgentInventoryRecord(node: "server-1", role: .server, etcd: true, arch: .amd64, k3sVersion: RolloutFixtures.from,
                                        endpoint: "10.0.0.1:9443", seenAt: Self.t0)
        try store.recordAgentInventory([AgentInventoryRecord(node: "agent-1", role: .agent, etcd: false, arch: .arm64,
                                                             k3sVersion: RolloutFixtures.from, endpoint: nil, seenAt: Self.t0), seen])
        #expect(try store.agentInventory().map(\.node) == ["server-1", "agent-1"])
        try store.recordAgentInventory([seen])
        #expect(try StateStore(stateDirectory: state).agentInventory() == [seen])
    }

    /// A maintenance period is recorded before anything is suspended and read back, through
    /// another connection, until it ends; a database from before maintenance mode gains its table.
    @Test func aMaintenancePeriodIsOpenUntilItEndsAndOlderDatabasesGainTheTable() throws {
        let directory = try TemporaryDirectory()
        let state = directory.file("state")
        let store = try StateStore(stateDirectory: state)
        #expect(try store.openMaintenancePeriod() == nil)
        var period = MaintenancePeriod(id: "m1", state: .enabling, since: Self.t0, reason: "kernel", by: "root@ctl", rollout: nil,
                                       suspended: ["Kustomization/flux-system/apps"], alreadySuspended: ["HelmRelease/default/podinfo"])
        try store.saveMaintenancePeriod(period)
        #expect(try StateStore(stateDirectory: state).openMaintenancePeriod() == period)
        period.state = .ended
        period.endedAt = Self.t0.adding(seconds: 60)
        period.endedBy = "root@ctl"
        try store.saveMaintenancePeriod(period)
        #expect(try store.openMaintenancePeriod() == nil)
        #expect(try store.maintenancePeriods(limit: 5) == [period])

        let database = "\(state)/\(StateStore.fileName)"
        let downgraded = try runProcess("/usr/bin/sqlite3", [database, "DROP TABLE maintenance_periods; DELETE FROM grdb_migrations WHERE identifier = 'v7-maintenance-mode';"])
        #expect(downgraded.status == 0, "\(downgraded.error)")
        let reopened = try StateStore(stateDirectory: state)
        #expect(try reopened.maintenancePeriods(limit: 5).isEmpty)
    }
}

/// Collects results from concurrent threads.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ item: String) { lock.withLock { items.append(item) } }
    var all: [String] { lock.withLock { items } }
}

/// Who did what, and the cluster Lease's counts.
extension StateStoreTests {
    /// Who did what: the operation that made a rollout comes with it, later ones with the
    /// transition they begin; a component update's with its record. Read back through another
    /// connection, in order.
    @Test func operationsAreRecordedWithWhatTheyBeginAndReadBackInOrder() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        let alice = Initiator(user: "root", sudoUser: "alice", host: "ctl-1")
        let serve = Initiator.serve(user: "upkeep", host: "ctl-2", policy: "automation.k3s: minor")
        let engine = try RolloutFixtures.engine("r1")
        try store.createRollout(engine, holder: "controller-a", now: Self.t0, stamp: OperationStamp(.apply, by: alice))
        try store.record(Self.transition(engine, before: engine, .resume, []), holder: "controller-a", now: Self.t0.adding(seconds: 5),
                         stamp: OperationStamp(.resume, by: serve))
        try store.record(Self.transition(engine, before: engine, .tick, []), holder: "controller-a", now: Self.t0.adding(seconds: 6))
        let other = try StateStore(stateDirectory: directory.file("state"))
        let detail = try other.rollout(id: "r1")
        #expect(detail.operations == [OperationEntry(kind: .apply, at: Self.t0, by: alice),
                                      OperationEntry(kind: .resume, at: Self.t0.adding(seconds: 5), by: serve)])
        #expect(detail.record.startedBy == OperationEntry(kind: .apply, at: Self.t0, by: alice))
        #expect(try other.history(limit: 5).first?.startedBy == detail.record.startedBy)
        #expect(detail.operations.map(\.summary) == ["apply by root (sudo by alice)@ctl-1", "resume by serve@ctl-2 (policy automation.k3s: minor)"])

        let update = ComponentUpdateRecord(id: "u1", component: "flux", from: "v2.4.0", to: "v2.5.1", repository: "file:///r.git",
                                           file: "flux-system/gotk-components.yaml", startedAt: Self.t0)
        try store.saveComponentUpdate(update)
        try store.recordOperation(OperationStamp(.update, by: alice), subject: "u1", now: Self.t0)
        #expect(try other.componentUpdates(limit: 5).first?.startedBy == OperationEntry(kind: .update, at: Self.t0, by: alice))
        // The JSON `history -o json` prints carries it.
        let json = String(decoding: try JSONEncoder().encode(try other.history(limit: 1)), as: UTF8.self)
        #expect(json.contains("\"startedBy\":{") && json.contains("\"sudoUser\":\"alice\"") && json.contains("\"kind\":\"apply\""), "\(json)")
    }

    /// Issue 18: an override of the compatibility table is an operation with its detail, and an
    /// update names the backup taken before its commit; both read back with the update.
    @Test func anOverrideAndAnUpdatesBackupAreRecordedWithTheUpdate() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        let alice = Initiator(user: "alice", host: "ctl-1")
        var update = ComponentUpdateRecord(id: "u1", component: "flux", from: "v2.4.0", to: "v2.5.1", repository: "file:///r.git",
                                           file: "flux-system/gotk-components.yaml", startedAt: Self.t0, backupID: "b1")
        try store.saveComponentUpdate(update)
        try store.recordOperation(OperationStamp(.update, by: alice), subject: "u1", now: Self.t0)
        try store.recordOperation(OperationStamp(.ignoreCompatibility, by: alice), subject: "u1", detail: "Flux v2.5.1 needs Kubernetes v1.32", now: Self.t0)
        update.outcome = .completed
        try store.saveComponentUpdate(update)
        let read = try #require(try StateStore(stateDirectory: directory.file("state")).componentUpdates(limit: 5).first)
        #expect(read.backupID == "b1" && read.outcome == .completed)
        #expect(read.startedBy == OperationEntry(kind: .update, at: Self.t0, by: alice), "the override is not what started it")
        #expect(read.ignoredCompatibility == OperationEntry(kind: .ignoreCompatibility, at: Self.t0, by: alice, detail: "Flux v2.5.1 needs Kubernetes v1.32"))
        #expect(read.ignoredCompatibility?.summary == "ignore-compatibility by alice@ctl-1: Flux v2.5.1 needs Kubernetes v1.32")
    }

    @Test func clusterLeaseEventsAreCounted() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        #expect(try store.leaseEventCounts().isEmpty)
        try store.countLeaseEvent("conflict", now: Self.t0)
        try store.countLeaseEvent("conflict", now: Self.t0.adding(seconds: 1))
        try store.countLeaseEvent("lost", now: Self.t0.adding(seconds: 2))
        #expect(try StateStore(stateDirectory: directory.file("state")).leaseEventCounts() == ["conflict": 2, "lost": 1])
    }

    /// A database from before who-did-what opens: its rollouts and updates say nothing of who
    /// started them, and new operations are recorded from then on.
    @Test func aDatabaseFromBeforeOperationsOpensWithItsRolloutsUnattributed() throws {
        let directory = try TemporaryDirectory()
        let state = directory.file("state")
        let store = try Self.store(directory)
        try store.createRollout(try RolloutFixtures.engine("r1"), holder: "controller-a", now: Self.t0)
        let database = "\(state)/\(StateStore.fileName)"
        let downgraded = try runProcess("/usr/bin/sqlite3", [database, """
            DROP TABLE operations;
            DROP TABLE lease_events;
            ALTER TABLE component_updates DROP COLUMN backup_id;
            DELETE FROM grdb_migrations WHERE identifier IN ('v8-operation-actor', 'v10-overrides-and-update-backups');
            """])
        #expect(downgraded.status == 0, "\(downgraded.error)")
        let reopened = try StateStore(stateDirectory: state)
        #expect(try reopened.history(limit: 5).map(\.id) == ["r1"] && reopened.history(limit: 5).first?.startedBy == nil)
        #expect(try reopened.rollout(id: "r1").operations.isEmpty)
        try reopened.recordOperation(OperationStamp(.abandon, by: Initiator(user: "bob", host: "h")), subject: "r1", now: Self.t0)
        #expect(try reopened.rollout(id: "r1").operations.map(\.kind) == [.abandon])
    }
}
