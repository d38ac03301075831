import CSQLite
import Foundation

/// A server node's k3s datastore as k3s lays it out under `server/db`: embedded etcd's
/// `etcd/member` directory, or kine's SQLite database `state.db` (WAL) with its `kine` table.
/// The agent backs up what it finds here (`k3s etcd-snapshot save`, or an online SQLite copy).
enum SandboxDatastore {
    static func create(_ node: SandboxNode) throws {
        let database = "\(node.dataDir)/server/db"
        let fm = FileManager.default
        if node.datastore == "etcd" {
            try fm.createDirectory(atPath: "\(database)/etcd/member/snap", withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
            try JSONFiles.atomicWrite(Data("name: \(node.name)\ndata-dir: \(database)/etcd\n".utf8), to: "\(database)/etcd/config", mode: 0o600)
            return
        }
        try fm.createDirectory(atPath: database, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var handle: OpaquePointer?
        defer { sqlite3_close_v2(handle) }
        guard sqlite3_open_v2("\(database)/state.db", &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else {
            throw SandboxError("cannot create \(database)/state.db: \(String(cString: sqlite3_errmsg(handle)))")
        }
        let schema = """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name INTEGER, created INTEGER, deleted INTEGER,
                create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB);
            INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value)
                SELECT '/registry/namespaces/default', 1, 0, 0, 0, 0, 'sandbox', NULL WHERE NOT EXISTS (SELECT 1 FROM kine);
            """
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, schema, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw SandboxError("cannot set up \(database)/state.db: \(text)")
        }
    }
}
