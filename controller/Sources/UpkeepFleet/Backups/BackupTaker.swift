import Foundation
import UpkeepProtocol

/// One datastore backup the controller holds, sealed in its vault.
public struct TakenBackup: Codable, Equatable, Sendable {
    public var id: String
    public var node: String
    public var format: BackupFormat
    /// The name the agent gave the file on its node.
    public var agentFileName: String
    /// The sealed file on the controller.
    public var path: String
    /// Plaintext size and SHA-256 (what `upkeep backup open` must give back).
    public var bytes: Int64
    public var sha256: String
    public var takenAtUnixMilliseconds: Int64

    public init(id: String, node: String, format: BackupFormat, agentFileName: String, path: String, bytes: Int64, sha256: String,
                takenAtUnixMilliseconds: Int64) {
        self.id = id
        self.node = node
        self.format = format
        self.agentFileName = agentFileName
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
        self.takenAtUnixMilliseconds = takenAtUnixMilliseconds
    }
}

/// Asks a server's agent for a datastore backup (`k3s etcd-snapshot save`, or an online copy of
/// the SQLite datastore with the token) and seals the stream into the vault as it arrives: the
/// plaintext never touches the controller's disk.
public struct BackupTaker: Sendable {
    public let fleet: AgentFleet
    public let vault: BackupVault
    public let timeoutSeconds: Int

    public init(fleet: AgentFleet, vault: BackupVault, timeoutSeconds: Int = 900) {
        self.fleet = fleet
        self.vault = vault
        self.timeoutSeconds = timeoutSeconds
    }

    /// Tries `servers` in order until one answers with a complete backup; every failure is
    /// named in the error when none does.
    public func take(id: String, servers: [String], now: @Sendable () -> Int64) async throws(BackupError) -> TakenBackup {
        guard !servers.isEmpty else { throw BackupError("the cluster has no server node to back up (only servers hold the datastore)") }
        var failures: [String] = []
        for node in servers {
            do {
                return try await take(id: id, from: node, now: now)
            } catch {
                failures.append("\(node): \(error)")
            }
        }
        throw BackupError("no server gave a backup; " + failures.joined(separator: "; "))
    }

    /// One backup from `node`'s agent under `operationID` (default `backup:<id>:<node>`).
    public func take(id: String, from node: String, operationID: String? = nil, now: @Sendable () -> Int64) async throws(BackupError) -> TakenBackup {
        let writer = try vault.seal(name: "\(id)-\(node)")
        do {
            let client = try await fleet.client(for: node).connection()
            guard let operationID = OperationID(rawValue: operationID ?? "backup:\(id):\(node)") else {
                throw BackupError("backup id \(id) does not fit in an operation id (\(OperationID.format))")
            }
            let request = BackupRequest(operationID: operationID, name: id)
            let (result, summary) = try await client.withCall(request, deadline: .now + .seconds(timeoutSeconds)) { call in
                let result = try await call.response()
                let summary = try await call.download.consume { try writer.append($0) }
                return (result, summary)
            }
            guard let summary, summary.bytes == result.bytes, writer.plaintextBytes == result.bytes else {
                throw BackupError("the agent announced \(result.bytes) bytes and sent \(writer.plaintextBytes)")
            }
            try writer.finish()
            return TakenBackup(id: id, node: node, format: result.format, agentFileName: result.fileName, path: writer.path,
                               bytes: summary.bytes, sha256: summary.sha256.rawValue, takenAtUnixMilliseconds: now())
        } catch let error as BackupError {
            writer.abandon()
            throw error
        } catch {
            writer.abandon()
            throw BackupError("\(error)")
        }
    }
}
