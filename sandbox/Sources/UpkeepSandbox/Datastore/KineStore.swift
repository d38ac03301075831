import CSQLite
import Foundation
import NIOConcurrencyHelpers

/// The fake kine of a single SQLite server: the etcd key-value API over kine's table in
/// `server/db/state.db` (https://github.com/k3s-io/kine, its generic SQL driver and the SQLite
/// schema).
///
/// As in kine, a row's `id` is the revision: every write appends a row (`created` 1 for the
/// first write of a key, `deleted` 1 for a deletion, `prev_revision` the key's previous row,
/// `old_value` its previous value), the newest row of a name is the key's state, and the
/// revision of the store is the largest id. So a transaction that writes several keys gives each
/// its own revision (the answer to each operation carries it), where etcd gives them one; the
/// API takes each object's `resourceVersion` from its own operation's answer.
///
/// What it leaves out of kine: leases and TTLs, compaction and its `compact_rev_key` row, gap
/// filling, watches. One connection, behind a lock: calls are serialized.
public final class KineStore: @unchecked Sendable {
    // One SQLite connection, only ever used under `lock` (hence unchecked Sendable); nil once closed.
    private var handle: OpaquePointer?
    private let lock = NIOLock()
    public let path: String

    /// A failure of the SQLite database itself.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// The table and indexes kine's SQLite driver creates.
    static let schema = """
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name INTEGER, created INTEGER, deleted INTEGER,
            create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB);
        CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name);
        CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name, id);
        CREATE INDEX IF NOT EXISTS kine_id_deleted_index ON kine (id, deleted);
        CREATE INDEX IF NOT EXISTS kine_prev_revision_index ON kine (prev_revision);
        CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);
        """

    /// Opens (creating when absent) the database at `path` with kine's schema.
    public init(path: String) throws {
        self.path = path
        var handle: OpaquePointer?
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil) == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw Failure(message: "cannot open \(path): \(message)")
        }
        sqlite3_busy_timeout(handle, 5000)
        self.handle = handle
        try execute(Self.schema)
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Closes the database (SQLite checkpoints the WAL into `state.db` as the last connection
    /// closes, as when k3s stops); later calls fail.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        sqlite3_close_v2(handle)
        handle = nil
    }

    /// Creates kine's table in a new database at `path` (what k3s does on its first start).
    public static func create(path: String) throws {
        _ = try KineStore(path: path)
    }

    // MARK: - The key-value API

    public var revision: Int64 {
        get throws { try withHandle { handle throws(Failure) in try Self.currentRevision(handle) } }
    }

    public func range(_ request: Gateway.RangeRequest) throws -> Gateway.RangeResponse {
        try withHandle { handle throws(Failure) in
            let revision = try Self.currentRevision(handle)
            return try Self.range(handle, request, header: Gateway.Header(revision: revision))
        }
    }

    public func put(_ key: String, _ value: [UInt8]) throws -> Gateway.Header {
        try transaction { handle throws(Failure) in
            let revision = try Self.put(handle, key, value)
            return Gateway.Header(revision: revision)
        }
    }

    public func txn(_ request: Gateway.TxnRequest) throws -> Gateway.TxnResponse {
        try transaction { handle throws(Failure) in
            var succeeded = true
            for compare in request.compare {
                let current = try Self.latest(handle, compare.key, atOrBefore: nil)
                let live = current.flatMap { $0.deleted ? nil : $0 }
                switch compare.target {
                case .modRevision(let revision): succeeded = succeeded && (live?.id ?? 0) == revision
                case .createRevision(let revision): succeeded = succeeded && (live?.createRevision ?? 0) == revision
                }
            }
            var responses: [Gateway.OperationResponse] = []
            for operation in succeeded ? request.success : request.failure {
                switch operation {
                case .put(let key, let value):
                    responses.append(.put(revision: try Self.put(handle, key, value)))
                case .deleteRange(let key, let rangeEnd):
                    let (deleted, revision) = try Self.deleteRange(handle, key, rangeEnd)
                    responses.append(.deleteRange(deleted: deleted, revision: revision))
                case .range(let range):
                    responses.append(.range(try Self.range(handle, range, header: Gateway.Header(revision: try Self.currentRevision(handle)))))
                }
            }
            return Gateway.TxnResponse(header: Gateway.Header(revision: try Self.currentRevision(handle)), succeeded: succeeded,
                                       responses: responses)
        }
    }

    public func deleteRange(_ key: String, rangeEnd: String?) throws -> (deleted: Int64, header: Gateway.Header) {
        try transaction { handle throws(Failure) in
            let (deleted, _) = try Self.deleteRange(handle, key, rangeEnd)
            return (deleted, Gateway.Header(revision: try Self.currentRevision(handle)))
        }
    }

    // MARK: - Rows

    struct Row {
        var id: Int64
        var name: String
        var created: Bool
        var deleted: Bool
        var createRevision: Int64
        var prevRevision: Int64
        var value: [UInt8]
    }

    static func currentRevision(_ handle: OpaquePointer?) throws(Failure) -> Int64 {
        var revision: Int64 = 0
        try query(handle, "SELECT COALESCE(MAX(id), 0) FROM kine", []) { statement in revision = sqlite3_column_int64(statement, 0) }
        return revision
    }

    static let rowColumns = "id, name, created, deleted, create_revision, prev_revision, value"

    static func row(_ statement: OpaquePointer?) -> Row {
        let count = Int(sqlite3_column_bytes(statement, 6))
        let value = count > 0 ? Array(UnsafeRawBufferPointer(start: sqlite3_column_blob(statement, 6), count: count)) : []
        return Row(id: sqlite3_column_int64(statement, 0), name: String(cString: sqlite3_column_text(statement, 1)),
                   created: sqlite3_column_int64(statement, 2) != 0, deleted: sqlite3_column_int64(statement, 3) != 0,
                   createRevision: sqlite3_column_int64(statement, 4), prevRevision: sqlite3_column_int64(statement, 5), value: value)
    }

    /// The newest row of `name` (at or before `revision`), deleted or not.
    static func latest(_ handle: OpaquePointer?, _ name: String, atOrBefore revision: Int64?) throws(Failure) -> Row? {
        var found: Row?
        try query(handle, "SELECT \(rowColumns) FROM kine WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1",
                  [.text(name), .integer(revision ?? Int64.max)]) { statement in found = row(statement) }
        return found
    }

    /// Rows written for `row`'s key since it was created (etcd's `version`).
    static func version(_ handle: OpaquePointer?, _ row: Row) throws(Failure) -> Int64 {
        var count: Int64 = 0
        try query(handle, "SELECT COUNT(*) FROM kine WHERE name = ? AND id >= ? AND id <= ?",
                  [.text(row.name), .integer(row.createRevision), .integer(row.id)]) { statement in count = sqlite3_column_int64(statement, 0) }
        return count
    }

    static func range(_ handle: OpaquePointer?, _ request: Gateway.RangeRequest, header: Gateway.Header) throws(Failure) -> Gateway.RangeResponse {
        let atRevision = request.revision > 0 ? request.revision : header.revision
        var rows: [Row] = []
        if let end = request.rangeEnd, !end.isEmpty {
            // The newest row of every name in [key, end) ("\0": no end), then the live ones.
            let bounded = end != "\0"
            let sql = """
                SELECT \(rowColumns) FROM kine WHERE id IN (SELECT MAX(id) FROM kine WHERE name >= ?\(bounded ? " AND name < ?" : "") AND id <= ? GROUP BY name)
                AND deleted = 0 ORDER BY name
                """
            var bindings: [Binding] = [.text(request.key)]
            if bounded { bindings.append(.text(end)) }
            bindings.append(.integer(atRevision))
            try query(handle, sql, bindings) { statement in rows.append(row(statement)) }
        } else if let row = try latest(handle, request.key, atOrBefore: atRevision), !row.deleted {
            rows = [row]
        }
        let count = Int64(rows.count)
        if request.countOnly { return Gateway.RangeResponse(header: header, kvs: [], count: count, more: false) }
        let limited = request.limit > 0 && rows.count > Int(request.limit)
        if limited { rows = Array(rows.prefix(Int(request.limit))) }
        var kvs: [Gateway.KeyValue] = []
        for row in rows {
            kvs.append(Gateway.KeyValue(key: row.name, value: row.value, createRevision: row.createRevision, modRevision: row.id,
                                        version: try version(handle, row)))
        }
        return Gateway.RangeResponse(header: header, kvs: kvs, count: count, more: limited)
    }

    /// Appends the row that sets `name` to `value`; returns its id, the new revision.
    static func put(_ handle: OpaquePointer?, _ name: String, _ value: [UInt8]) throws(Failure) -> Int64 {
        let current = try latest(handle, name, atOrBefore: nil)
        let live = current.flatMap { $0.deleted ? nil : $0 }
        let id = try currentRevision(handle) + 1
        try execute(handle, "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES (?, ?, ?, 0, ?, ?, 0, ?, ?)",
                    [.integer(id), .text(name), .integer(live == nil ? 1 : 0), .integer(live?.createRevision ?? id), .integer(current?.id ?? 0),
                     .blob(value), live.map { .blob($0.value) } ?? .null])
        return id
    }

    /// Appends a deletion row for every live key in [key, rangeEnd) (or `key` alone).
    static func deleteRange(_ handle: OpaquePointer?, _ key: String, _ rangeEnd: String?) throws(Failure) -> (deleted: Int64, revision: Int64) {
        let live = try range(handle, Gateway.RangeRequest(key: key, rangeEnd: rangeEnd), header: Gateway.Header(revision: currentRevision(handle))).kvs
        var revision = try currentRevision(handle)
        for kv in live {
            revision += 1
            try execute(handle, "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES (?, ?, 0, 1, ?, ?, 0, ?, ?)",
                        [.integer(revision), .text(kv.key), .integer(kv.createRevision), .integer(kv.modRevision), .blob(kv.value), .blob(kv.value)])
        }
        return (Int64(live.count), revision)
    }

    // MARK: - SQLite

    enum Binding {
        case integer(Int64)
        case text(String)
        case blob([UInt8])
        case null
    }

    private func withHandle<T>(_ body: (OpaquePointer?) throws(Failure) -> T) throws(Failure) -> T {
        lock.lock()
        defer { lock.unlock() }
        guard handle != nil else { throw Failure(message: "\(path) is closed (k3s is stopping)") }
        return try body(handle)
    }

    /// `body` inside one SQLite transaction (`BEGIN IMMEDIATE`), rolled back when it throws.
    private func transaction<T>(_ body: (OpaquePointer?) throws(Failure) -> T) throws(Failure) -> T {
        try withHandle { handle throws(Failure) in
            try Self.execute(handle, "BEGIN IMMEDIATE", [])
            do throws(Failure) {
                let result = try body(handle)
                try Self.execute(handle, "COMMIT", [])
                return result
            } catch {
                _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
                throw error
            }
        }
    }

    private func execute(_ sql: String) throws(Failure) {
        try withHandle { handle throws(Failure) in
            var message: UnsafeMutablePointer<CChar>?
            guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
                let text = message.map { String(cString: $0) } ?? "unknown error"
                sqlite3_free(message)
                throw Failure(message: "\(path): \(text)")
            }
        }
    }

    static func execute(_ handle: OpaquePointer?, _ sql: String, _ bindings: [Binding]) throws(Failure) {
        try query(handle, sql, bindings) { _ in }
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    static func query(_ handle: OpaquePointer?, _ sql: String, _ bindings: [Binding], row: (OpaquePointer?) -> Void) throws(Failure) {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK else {
            throw Failure(message: "kine: \(String(cString: sqlite3_errmsg(handle))) in \(sql)")
        }
        defer { sqlite3_finalize(statement) }
        for (offset, binding) in bindings.enumerated() {
            let index = Int32(offset + 1)
            switch binding {
            case .integer(let value): sqlite3_bind_int64(statement, index, value)
            case .text(let value): sqlite3_bind_text(statement, index, value, -1, transient)
            case .blob(let value): _ = value.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
            case .null: sqlite3_bind_null(statement, index)
            }
        }
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW: row(statement)
            case SQLITE_DONE: return
            default: throw Failure(message: "kine: \(String(cString: sqlite3_errmsg(handle)))")
            }
        }
    }
}
