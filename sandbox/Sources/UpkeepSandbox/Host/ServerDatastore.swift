import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import UpkeepCore
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPOSIX
import UpkeepProcess

/// The datastore a fake k3s server runs before its apiserver counts as up: its etcd member
/// (`EtcdMember`), or, on a single SQLite server, kine over `server/db/state.db` served as the
/// etcd gateway on `<address>:2379`. Then the storage-version check: a server of an older
/// minor than the one that last wrote the datastore refuses to start, and one that became
/// healthy records its minor (`StorageMinor`).
final class ServerDatastore: Sendable {
    let node: SandboxNode
    /// This server's own endpoint.
    let gateway: EtcdGateway
    private let etcd = NIOLockedValueBox<(pid: pid_t, lifeline: Int32)?>(nil)
    private let kine = NIOLockedValueBox<(store: KineStore, server: HTTPServer)?>(nil)
    private let log: @Sendable (String, String) -> Void

    /// Longest a server waits for its etcd member to serve a quorum read (k3s waits as long as
    /// its unit lets it; past this the fake k3s exits and systemd starts it again).
    static let readySecondsMax = 600.0
    /// How often the wait says that it still waits.
    static let waitReportSeconds = 5.0
    /// The key a readiness probe reads (a linearizable read needs a quorum, whatever the key).
    static let probeKey = RegistryKeys.sandboxPrefix + "ready"

    private init(node: SandboxNode, log: @escaping @Sendable (String, String) -> Void) {
        self.node = node
        self.log = log
        gateway = EtcdGateway(endpoints: EtcdMember.clientURLs(of: [node.address]), callTimeoutSeconds: 3, attemptTimeoutSeconds: 3)
    }

    /// Starts the node's datastore and returns once it serves (etcd: a quorum read succeeded).
    static func start(_ node: SandboxNode, log: @escaping @Sendable (String, String) -> Void) async throws -> ServerDatastore {
        let datastore = ServerDatastore(node: node, log: log)
        do {
            if node.datastore == "etcd" {
                try await datastore.startEtcd()
            } else {
                try await datastore.startKine()
            }
        } catch {
            await datastore.stop()
            throw error
        }
        return datastore
    }

    /// The etcd member's exit status, once it has exited on its own (nil while it runs, and for kine).
    func etcdExitStatus() -> Int32? {
        etcd.withLockedValue { running in
            guard let pid = running?.pid else { return nil }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            guard result == pid || (result < 0 && errno == ECHILD) else { return nil }
            if let lifeline = running?.lifeline { close(lifeline) }
            running = nil
            return result == pid ? status : 0
        }
    }

    // MARK: - etcd

    private func startEtcd() async throws {
        let member = EtcdMember(node: node)
        let name: String
        let arguments: [String]
        switch member.startMode {
        case .restart:
            name = try member.name()
            log("info", "Starting etcd member \(name) from its data in \(member.directory)")
            arguments = member.arguments(name: name, initialCluster: "\(name)=\(member.peerURL)", state: "new", token: nil)
        case .bootstrap(let bootstrap):
            name = try member.name()
            log("info", "Starting etcd member \(name) of a new cluster: \(bootstrap.initialCluster)")
            arguments = member.arguments(name: name, initialCluster: bootstrap.initialCluster, state: "new", token: bootstrap.token)
        case .join:
            try? FileManager.default.removeItem(atPath: member.directory)
            name = try member.name()
            let initialCluster = try await join(member, name: name)
            arguments = member.arguments(name: name, initialCluster: initialCluster, state: "existing", token: nil)
        }
        let started = try member.spawn(arguments)
        etcd.withLockedValue { $0 = started }
        try await waitReady(member)
        // A member exists now: later starts restart it instead of forming a new cluster.
        unlink(member.bootstrapFile)
        log("info", "etcd member \(name) is ready at \(member.clientURL)")
    }

    /// Joins the running cluster through a live member, as k3s does for a server without
    /// `server/db`: removes members of this node from an earlier life, adds itself, and returns
    /// the initial cluster to start with (`--initial-cluster-state existing`).
    private func join(_ member: EtcdMember, name: String) async throws -> String {
        let others = (node.etcdPeers ?? []).filter { $0 != node.address }
        guard !others.isEmpty else {
            throw SandboxError("etcd: no member data in \(member.directory) and no other server to join; restore a snapshot (k3s server --cluster-reset --cluster-reset-restore-path=FILE)")
        }
        let peers = EtcdGateway(endpoints: EtcdMember.clientURLs(of: others), callTimeoutSeconds: 5, attemptTimeoutSeconds: 2)
        let deadline = Date().addingTimeInterval(Self.readySecondsMax)
        var lastReport = Date.distantPast
        while true {
            do {
                for stale in try await peers.members() where stale.name == node.name || stale.name.hasPrefix("\(node.name)-")
                    || stale.peerURLs.contains(member.peerURL)
                {
                    log("info", "Removing stale etcd member name=\(stale.name.isEmpty ? "(unstarted)" : stale.name) id=\(String(stale.id, radix: 16)) peer=\(stale.peerURLs.joined(separator: ","))")
                    try await peers.removeMember(id: stale.id)
                }
                let members = try await peers.addMember(peerURL: member.peerURL)
                log("info", "Adding member \(name)=\(member.peerURL) to etcd cluster")
                // As etcdctl prints it after `member add`: every member's peer URLs, the new one
                // under its name (another member still unstarted has none yet).
                return members.flatMap { added in
                    added.peerURLs.map { "\(added.peerURLs.contains(member.peerURL) ? name : added.name)=\($0)" }
                }.sorted().joined(separator: ",")
            } catch {
                guard Date() < deadline else { throw SandboxError("ETCD join failed: \(error)") }
                if Date().timeIntervalSince(lastReport) >= Self.waitReportSeconds {
                    log("info", "Waiting to join the etcd cluster through \(others.joined(separator: ", ")): \(error)")
                    lastReport = Date()
                }
                try await Task.sleep(nanoseconds: 500_000_000)
            }
        }
    }

    /// Waits until this member serves a linearizable read (it is part of a cluster with quorum).
    private func waitReady(_ member: EtcdMember) async throws {
        let deadline = Date().addingTimeInterval(Self.readySecondsMax)
        var lastReport = Date()
        while true {
            if let status = etcdExitStatus() {
                throw SandboxError("etcd exited (status \(WaitStatus(status).shellCode)) before it was ready; see \(member.logFile)")
            }
            do {
                _ = try await gateway.get(Self.probeKey)
                return
            } catch {
                guard Date() < deadline else {
                    throw SandboxError("etcd did not become ready within \(Int(Self.readySecondsMax)) s: \(error)")
                }
                if Date().timeIntervalSince(lastReport) >= Self.waitReportSeconds {
                    log("info", "Waiting for etcd server to become available: \(error)")
                    lastReport = Date()
                }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
        }
    }

    // MARK: - kine

    private func startKine() async throws {
        let database = "\(node.dataDir)/server/db"
        try FileManager.default.createDirectory(atPath: database, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let store = try KineStore(path: "\(database)/state.db")
        // Blocking: every call is a SQLite transaction.
        let server = try await HTTPServer.start(host: node.address, port: EtcdMember.clientPort, responder: .blocking {
            GatewayService.respond($0, kine: store)
        })
        kine.withLockedValue { $0 = (store, server) }
        log("info", "Configuring sqlite3 database connection pooling: kine on \(database)/state.db, etcd API at http://\(node.address):\(EtcdMember.clientPort)")
    }

    // MARK: - The storage version

    /// The minor recorded in the datastore, and the revision of its key (0: none recorded).
    private func recordedStorageMinor() async throws(DatastoreError) -> (value: JSON?, modRevision: Int64) {
        let (_, recorded) = try await gateway.get(StorageMinor.key)
        return (recorded.flatMap { try? JSON.parse(bytes: $0.value) }, recorded?.modRevision ?? 0)
    }

    /// At start: refuses (throws) when the datastore was last written by a newer minor than
    /// `version` (`StorageMinor`).
    func checkStorageMinor(version: String) async throws {
        let recorded = try await recordedStorageMinor().value
        if case .refuse(let message) = StorageMinor.verdict(recorded: recorded, version: version, node: node.name) {
            throw SandboxError(message)
        }
    }

    /// Once healthy: records `version`'s minor when it is newer than the recorded one, the
    /// larger of the two winning against a server recording at the same time (the put is
    /// guarded by the key's revision, and read again when that moved).
    func recordStorageMinor(version: String) async throws {
        for _ in 0..<Self.recordAttemptsMax {
            let (recorded, modRevision) = try await recordedStorageMinor()
            switch StorageMinor.verdict(recorded: recorded, version: version, node: node.name) {
            case .refuse(let message):
                // A newer minor wrote meanwhile: the record stays, and this server stops.
                throw SandboxError(message)
            case .start(nil):
                return
            case .start(let record?):
                let answer = try await gateway.txn(Gateway.TxnRequest(compare: [Gateway.Compare(key: StorageMinor.key, .modRevision(modRevision))],
                                                                       success: [.put(key: StorageMinor.key, value: record.serialized())]))
                if answer.succeeded {
                    log("info", "Datastore storage minor recorded: \(record["kubernetes"]?.string ?? "")")
                    return
                }
            }
        }
        throw SandboxError("could not record the datastore's storage minor: its key kept changing (\(Self.recordAttemptsMax) attempts)")
    }

    /// Reads and guarded writes of the storage minor before giving up.
    static let recordAttemptsMax = 5

    // MARK: - Stop

    /// Stops the etcd member (SIGTERM, then SIGKILL after `stopGraceSeconds`) or kine.
    func stop() async {
        if let (pid, lifeline) = etcd.withLockedValue({ running in defer { running = nil }; return running }) {
            kill(pid, SIGTERM)
            if await ProcessRun.reap(pid, timeoutSeconds: Self.stopGraceSeconds) == nil {
                log("warning", "etcd did not stop within \(Int(Self.stopGraceSeconds)) s of SIGTERM; killing it")
                kill(pid, SIGKILL)
                _ = await ProcessRun.reap(pid, timeoutSeconds: 5)
            }
            close(lifeline)
        }
        unlink(node.etcdPIDFile)
        if let (store, server) = kine.withLockedValue({ running in defer { running = nil }; return running }) {
            await server.close()
            store.close()
        }
    }

    /// etcd hands leadership over before it stops, bounded by its election timeout.
    static let stopGraceSeconds = 10.0
}
