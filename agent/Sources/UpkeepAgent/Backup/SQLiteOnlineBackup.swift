#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore

/// A consistent copy of a live SQLite database through SQLite's online backup API, while k3s
/// keeps writing to it: pages are copied in steps, and a step that meets a lock waits and retries,
/// within a bound.
///
/// libsqlite3 is loaded on the first backup (`dlopen`), not linked: only a k3s server with the
/// SQLite datastore ever needs it, and a linked library would be mapped and relocated by every
/// idle agent (about 240 KiB resident).
enum SQLiteOnlineBackup {
    static let pagesPerStep: Int32 = 1024
    static let busyRetriesMax = 600

    static func copy(from source: String, to destination: String) throws(AgentFailure) {
        let sqlite = try SQLiteLibrary.shared.get()
        var sourceDB: OpaquePointer?
        var destinationDB: OpaquePointer?
        defer {
            _ = sqlite.closeV2(sourceDB)
            _ = sqlite.closeV2(destinationDB)
        }
        guard sqlite.openV2(source, &sourceDB, SQLiteLibrary.openReadOnly, nil) == SQLiteLibrary.ok else {
            throw failure(sqlite, "open \(source)", sourceDB)
        }
        _ = sqlite.busyTimeout(sourceDB, 5_000)
        unlink(destination)
        guard sqlite.openV2(destination, &destinationDB, SQLiteLibrary.openReadWrite | SQLiteLibrary.openCreate, nil) == SQLiteLibrary.ok else {
            throw failure(sqlite, "create \(destination)", destinationDB)
        }
        guard let backup = sqlite.backupInit(destinationDB, "main", sourceDB, "main") else {
            throw failure(sqlite, "start the backup of \(source)", destinationDB)
        }
        var retries = 0
        while true {
            let result = sqlite.backupStep(backup, pagesPerStep)
            if result == SQLiteLibrary.done { break }
            if result == SQLiteLibrary.busy || result == SQLiteLibrary.locked {
                retries += 1
                guard retries <= busyRetriesMax else {
                    _ = sqlite.backupFinish(backup)
                    throw AgentFailure(.io, "\(source) stayed locked for \(busyRetriesMax / 10) s; retry the backup")
                }
                usleep(100_000)
                continue
            }
            guard result == SQLiteLibrary.ok else {
                _ = sqlite.backupFinish(backup)
                throw failure(sqlite, "copy \(source)", destinationDB)
            }
        }
        guard sqlite.backupFinish(backup) == SQLiteLibrary.ok else { throw failure(sqlite, "finish the backup of \(source)", destinationDB) }
        chmod(destination, 0o600)
    }

    private static func failure(_ sqlite: SQLiteLibrary, _ what: String, _ db: OpaquePointer?) -> AgentFailure {
        let message = db.flatMap { sqlite.errmsg($0) }.map { String(cString: $0) } ?? "out of memory"
        return AgentFailure(.io, "cannot \(what): \(message)")
    }
}

/// The few functions of the system's libsqlite3 the online backup calls, looked up once.
struct SQLiteLibrary: @unchecked Sendable {
    // sqlite3.h's result codes and open flags (a stable ABI since SQLite 3.0).
    static let ok: Int32 = 0, busy: Int32 = 5, locked: Int32 = 6, done: Int32 = 101
    static let openReadOnly: Int32 = 0x1, openReadWrite: Int32 = 0x2, openCreate: Int32 = 0x4

    /// The shared object Debian's libsqlite3-0 installs (and libsqlite3-dev links against).
    static let soname = "libsqlite3.so.0"
    /// Loaded on first use; a failure is kept, with what to install.
    static let shared: Result<SQLiteLibrary, AgentFailure> = Result { () throws(AgentFailure) in try SQLiteLibrary(soname) }

    typealias Open = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<OpaquePointer?>?, Int32, UnsafePointer<CChar>?) -> Int32
    typealias Handle = @convention(c) (OpaquePointer?) -> Int32
    typealias HandleInt = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias BackupInit = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    typealias Message = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    let openV2: Open
    let closeV2: Handle
    let busyTimeout: HandleInt
    let backupInit: BackupInit
    let backupStep: HandleInt
    let backupFinish: Handle
    let errmsg: Message

    /// `name` loaded with `dlopen` (never closed) and its functions resolved.
    init(_ name: String) throws(AgentFailure) {
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw AgentFailure(.io, "cannot load \(name) to back up the SQLite datastore (\(reason)); install SQLite's library (apt install libsqlite3-0)")
        }
        func symbol<T>(_ symbol: String, as type: T.Type) throws(AgentFailure) -> T {
            guard let address = dlsym(handle, symbol) else {
                throw AgentFailure(.io, "\(name) has no \(symbol); is it SQLite 3?")
            }
            return unsafeBitCast(address, to: type)
        }
        openV2 = try symbol("sqlite3_open_v2", as: Open.self)
        closeV2 = try symbol("sqlite3_close_v2", as: Handle.self)
        busyTimeout = try symbol("sqlite3_busy_timeout", as: HandleInt.self)
        backupInit = try symbol("sqlite3_backup_init", as: BackupInit.self)
        backupStep = try symbol("sqlite3_backup_step", as: HandleInt.self)
        backupFinish = try symbol("sqlite3_backup_finish", as: Handle.self)
        errmsg = try symbol("sqlite3_errmsg", as: Message.self)
    }
}
