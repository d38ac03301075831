import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A consistent copy of a live SQLite database through SQLite's online backup API, while k3s
/// keeps writing to it: pages are copied in steps, and a step that meets a lock waits and retries,
/// within a bound.
enum SQLiteOnlineBackup {
    static let pagesPerStep: Int32 = 1024
    static let busyRetriesMax = 600

    static func copy(from source: String, to destination: String) throws(AgentFailure) {
        var sourceDB: OpaquePointer?
        var destinationDB: OpaquePointer?
        defer {
            sqlite3_close_v2(sourceDB)
            sqlite3_close_v2(destinationDB)
        }
        guard sqlite3_open_v2(source, &sourceDB, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else {
            throw failure("open \(source)", sourceDB)
        }
        sqlite3_busy_timeout(sourceDB, 5_000)
        unlink(destination)
        guard sqlite3_open_v2(destination, &destinationDB, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else {
            throw failure("create \(destination)", destinationDB)
        }
        guard let backup = sqlite3_backup_init(destinationDB, "main", sourceDB, "main") else {
            throw failure("start the backup of \(source)", destinationDB)
        }
        var retries = 0
        while true {
            let result = sqlite3_backup_step(backup, pagesPerStep)
            if result == SQLITE_DONE { break }
            if result == SQLITE_BUSY || result == SQLITE_LOCKED {
                retries += 1
                guard retries <= busyRetriesMax else {
                    sqlite3_backup_finish(backup)
                    throw AgentFailure(.io, "\(source) stayed locked for \(busyRetriesMax / 10) s; retry the backup")
                }
                usleep(100_000)
                continue
            }
            guard result == SQLITE_OK else {
                sqlite3_backup_finish(backup)
                throw failure("copy \(source)", destinationDB)
            }
        }
        guard sqlite3_backup_finish(backup) == SQLITE_OK else { throw failure("finish the backup of \(source)", destinationDB) }
        chmod(destination, 0o600)
    }

    private static func failure(_ what: String, _ db: OpaquePointer?) -> AgentFailure {
        let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "out of memory"
        return AgentFailure(.io, "cannot \(what): \(message)")
    }
}
