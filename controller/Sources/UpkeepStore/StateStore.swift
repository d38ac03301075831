import Foundation
import GRDB
import UpkeepRollout

/// The controller's durable state: one SQLite database `<stateDir>/upkeep.db` in WAL mode
/// holding rollouts (plan, policy, the engine now and then), their transitions (the events, replayed from it),
/// per-node steps, notices, the lease that keeps a second controller out, and the notification
/// outbox.
///
/// Every method is one transaction. Writes that move a rollout forward check the lease inside
/// the same transaction, so a controller that lost its lease can never record (and therefore
/// never perform) another step. It never reads the clock: callers pass `now`.
public final class StateStore: Sendable {
    public static let fileName = "upkeep.db"
    /// How long a write waits for another connection's write to finish before failing.
    public static let busyTimeoutSeconds: Double = 10

    public let path: String
    /// The sinks events are written to the outbox for (`emit`, and the milestones `record` finds).
    public let notifications: NotificationRouting
    /// Bytes of transitions recorded since a rollout's last engine snapshot past which `record`
    /// takes another even of an engine smaller than that (a bigger one waits for its own size).
    public let journalBytesPerSnapshotMin: Int
    public static let journalBytesPerSnapshotMinDefault = 64 * 1024
    /// A pool on the file; for `reading(stateDirectory:)` of a database not yet created, an
    /// empty one in memory.
    let pool: any DatabaseWriter

    /// Opens (creating if needed) `<stateDirectory>/upkeep.db`; the directory is made 0700 and
    /// the database file 0600.
    public convenience init(stateDirectory: String, notifications: NotificationRouting = .none,
                            journalBytesPerSnapshotMin: Int = journalBytesPerSnapshotMinDefault) throws(StoreError) {
        try Self.makePrivateDirectory(stateDirectory)
        try self.init(path: stateDirectory + "/" + Self.fileName, notifications: notifications, journalBytesPerSnapshotMin: journalBytesPerSnapshotMin)
    }

    /// Opens (creating if needed, mode 0600) the database at `path` and brings its schema up to date.
    public init(path: String, notifications: NotificationRouting = .none,
                journalBytesPerSnapshotMin: Int = journalBytesPerSnapshotMinDefault) throws(StoreError) {
        self.path = path
        self.notifications = notifications
        self.journalBytesPerSnapshotMin = max(journalBytesPerSnapshotMin, 0)
        // Never open and close a descriptor of a database file this process may already hold
        // open: close() drops every POSIX lock the process has on it, SQLite's included, and two
        // writers then corrupt it (https://www.sqlite.org/howtocorrupt.html, section 2.2.1).
        // Only a file that does not exist yet is created here; an existing one is chmod'ed by path.
        let descriptor = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            close(descriptor)
        } else if errno != EEXIST {
            throw StoreError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard chmod(path, 0o600) == 0 else {
            throw StoreError.cannotOpen(path: path, reason: "cannot make it private (mode 0600): \(String(cString: strerror(errno)))")
        }

        var configuration = Configuration()
        configuration.busyMode = .timeout(Self.busyTimeoutSeconds)
        configuration.label = "upkeep-state"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw Self.openFailure(path, error)
        }
        let migrator = StoreSchema.migrator
        do {
            if try pool.read({ try migrator.hasBeenSuperseded($0) }) { throw StoreError.newerSchema(path: path) }
            try migrator.migrate(pool)
        } catch let error as StoreError {
            throw error
        } catch {
            throw Self.openFailure(path, error)
        }
    }

    private init(path: String, reading pool: any DatabaseWriter) {
        self.path = path
        notifications = .none
        journalBytesPerSnapshotMin = Self.journalBytesPerSnapshotMinDefault
        self.pool = pool
    }

    /// Opens `<stateDirectory>/upkeep.db` for reading only (`status`, `history`, `report`):
    /// nothing is created, chmod'ed, migrated or written, and a writer holding the database does
    /// not stop the read (WAL). A database that does not exist yet reads as an empty one; one
    /// whose schema is older than this upkeep's is opened as `init(stateDirectory:)` does, which
    /// brings it up to date (the one write a read may cause).
    public static func reading(stateDirectory: String) throws(StoreError) -> StateStore {
        let path = stateDirectory + "/" + Self.fileName
        let migrator = StoreSchema.migrator
        guard access(path, F_OK) == 0 else {
            do {
                let memory = try DatabaseQueue()
                try migrator.migrate(memory)
                return StateStore(path: path, reading: memory)
            } catch {
                throw StoreError.database(Self.reason(error))
            }
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(Self.busyTimeoutSeconds)
        configuration.label = "upkeep-state-read"
        let pool: DatabasePool
        let current: Bool
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            if try pool.read({ try migrator.hasBeenSuperseded($0) }) { throw StoreError.newerSchema(path: path) }
            current = try pool.read { try migrator.hasCompletedMigrations($0) }
        } catch let error as StoreError {
            throw error
        } catch {
            throw Self.openFailure(path, error)
        }
        return current ? StateStore(path: path, reading: pool) : try StateStore(stateDirectory: stateDirectory)
    }

    /// `cannotOpen`, or `locked` when another process holds the database past the busy timeout.
    static func openFailure(_ path: String, _ error: any Error) -> StoreError {
        if let error = error as? DatabaseError, error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            return .locked(path: path)
        }
        return .cannotOpen(path: path, reason: reason(error))
    }

    static func makePrivateDirectory(_ path: String) throws(StoreError) {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw StoreError.stateDirectory(path: path, reason: "cannot create it: \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw StoreError.stateDirectory(path: path, reason: "it is a file, not a directory")
        }
        guard chmod(path, 0o700) == 0 else {
            throw StoreError.stateDirectory(path: path, reason: "cannot make it private (mode 0700): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs `body` in one immediate write transaction, mapping failures to `StoreError`.
    func write<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        try Self.mapped { try pool.write(body) }
    }

    /// Runs `body` on a snapshot of the last committed state.
    func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        try Self.mapped { try pool.read(body) }
    }

    private static func mapped<T>(_ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            throw StoreError.locked(path: nil)
        } catch {
            throw StoreError.database(reason(error))
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error.resultCode)" }
        return "\(error)"
    }
}
