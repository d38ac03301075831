import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepPOSIX
import UpkeepProtocol
import UpkeepRollout
import UpkeepStore

/// `upkeep recover --from-backup ID|FILE`: restore a cluster whose Kubernetes API is down,
/// through its agents alone, by the steps of a hop's restore (docs/backups.md, "Recovering").
struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a cluster whose API is down from a sealed datastore backup, through the agents alone.",
        discussion: """
            The agents are reached at the addresses the controller last read from the API (its state database), or \
            those given with --agent NODE=HOST:PORT; every server's agent must answer. Every server is brought to the \
            backup's k3s version: the backup's binary is staged and the backup streamed to one server before anything \
            stops, then k3s stops on every server, the backup is restored on that server (etcd: --cluster-reset \
            --cluster-reset-restore-path; SQLite: state.db and the token), the others clear their datastore and \
            rejoin one at a time, and agents newer than the backup's version are brought to it. Every object written \
            since the backup was taken is lost (https://docs.k3s.io/upgrades/roll-back). Every step is recorded as a \
            rollout of its own; `upkeep resume` carries an interrupted recovery on. Exit codes as for `upkeep apply`.
            """
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .customLong("from-backup"), help: ArgumentHelp("A backup id from `upkeep backup list`, or a sealed .upkb file.", valueName: "ID|FILE"))
    var backup: String

    @Option(name: .customLong("agent"), help: ArgumentHelp("Reach NODE's agent at HOST:PORT (repeatable; overrides the last known address).",
                                                           valueName: "NODE=HOST:PORT"))
    var agents: [String] = []

    @Option(name: .customLong("k3s-version"), help: ArgumentHelp("The k3s version the backup was taken at (for a FILE, or a backup recorded without one).",
                                                                 valueName: "VERSION"))
    var k3sVersion: String?

    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lease even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    func validate() throws {
        for agent in agents where RecoveryAddressBook.parse(agent) == nil {
            throw ValidationError("--agent \(agent): write NODE=HOST:PORT")
        }
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        let vault = Backups.vault(config, stateDirectory: config.resolvedStateDirectory())
        let record = try await RecoverySource.resolve(backup, version: k3sVersion, store: store, vault: vault)
        let code = try await NotificationRun.with(config, store: store) { try await recover(config: config, store: store, record: record) }
        if code != 0 { throw ExitCode(code) }
    }

    private func recover(config: ControllerConfig, store: StateStore, record: BackupRecord) async throws -> Int32 {
        try await ClusterSession.with(config) { session in
            let book = try RecoveryAddressBook(store: store, flags: agents)
            let fleet = try await session.fleet(for: book.reading)
            let nodes = await book.ask(fleet)
            let unreachable = nodes.filter { $0.info == nil && $0.knownRole != .agent }
            guard unreachable.isEmpty else {
                throw CommandFailure(code: RolloutExitCode.refused,
                                     message: "refused: the agents of \(unreachable.map { "\($0.name) (\($0.problem ?? "no answer"))" }.joined(separator: ", ")) "
                                         + "do not answer; a recovery needs every server's agent (give addresses with --agent NODE=HOST:PORT); nothing was changed")
            }
            let answered = nodes.compactMap(\.recoveryNode)
            let servers = answered.filter { $0.role == .server }.sorted { ($0.name == record.node ? 0 : 1, $0.name) < ($1.name == record.node ? 0 : 1, $1.name) }
            guard !servers.isEmpty else {
                throw CommandFailure(code: RolloutExitCode.refused, message: "refused: no server's agent is known; give them with --agent NODE=HOST:PORT")
            }
            let agentNodes = answered.filter { $0.role == .agent }
            for node in nodes where node.info == nil { print("note: \(node.name)'s agent does not answer (\(node.problem ?? "?")); it is left as it is") }
            guard let version = record.k3sVersion else { preconditionFailure("RecoverySource sets the version") }
            let snapshot = RestoreSnapshot(backupID: record.id, version: version, takenAt: record.takenAt, node: record.node)
            print(Self.describe(record: record, version: version, servers: servers, agents: agentNodes), terminator: "")
            if !yes { try Apply.confirm(record.id) }
            let engine: RolloutEngine
            do {
                engine = try RolloutEngine(recoveryID: RolloutDriver.newRolloutID().replacingOccurrences(of: "r", with: "v", options: .anchored),
                                           snapshot: snapshot, servers: servers, agents: agentNodes, policy: config.rollout,
                                           agentConcurrency: config.concurrency)
            } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "\(error)")
            }
            return try await RolloutDriver(session: session, store: store, forceTakeover: forceTakeover).run(.new(engine, .recover), reading: book.reading, live: false)
        }
    }

    static func describe(record: BackupRecord, version: K3sVersion, servers: [RecoveryNode], agents: [RecoveryNode]) -> String {
        let newer = agents.filter { $0.version > version }
        return """
            Recovery from backup \(record.id) (\(record.format) of \(record.node), taken \(record.takenAt.utcDescription), \
            \(Backups.byteCount(record.bytes))), through the agents:
              \(servers[0].name) restores it with k3s \(version)\(servers.count > 1 ? "; \(servers.dropFirst().map(\.name).joined(separator: ", ")) clear their datastore and rejoin" : " (the only server)")
              agents brought to \(version): \(newer.map { "\($0.name) (\($0.version))" }.joined(separator: ", ").nonEmpty ?? "none")
              every object written to the cluster since \(record.takenAt.utcDescription) is lost

            """
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

/// The backup a recovery restores: a recorded one, or a sealed file verified by decrypting it
/// in memory (its digest, size and format learnt on the way; no plaintext touches the disk) and
/// then recorded, so the agent transport finds it like any other.
enum RecoverySource {
    static func resolve(_ text: String, version: String?, store: StateStore, vault: BackupVault) async throws -> BackupRecord {
        let given = try version.map { text in
            do { return try K3sVersion(text) } catch { throw CommandFailure(code: RolloutExitCode.usage, message: "--k3s-version \(text): \(error)") }
        }
        if !(text.contains("/") || text.hasSuffix(".upkb")) {
            guard var record = try storeCall({ try store.backup(id: text) }) else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "no backup \(text); `upkeep backup list` shows them, or give a sealed .upkb file")
            }
            guard FileManager.default.fileExists(atPath: record.path) else {
                throw CommandFailure(code: RolloutExitCode.refused, message: "the sealed file of backup \(text) (\(record.path)) is gone; nothing was changed")
            }
            record.k3sVersion = record.k3sVersion ?? given
            guard record.k3sVersion != nil else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "backup \(text) was recorded without its k3s version; give it with --k3s-version")
            }
            return record
        }
        guard let given else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "a backup file carries no k3s version; give the version it was taken at with --k3s-version")
        }
        var head: [UInt8] = []
        let opened: (bytes: Int64, sha256: String)
        do {
            opened = try await vault.stream(text) { block in if head.count < 512 { head += block.prefix(512 - head.count) } }
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "\(text): \(error)")
        }
        // A tar (SQLite datastore and token) says "ustar" at offset 257; anything else is an etcd snapshot.
        let isTar = head.count >= 262 && Array(head[257..<262]) == Array("ustar".utf8)
        let id = "f" + opened.sha256.prefix(12)
        if let known = try storeCall({ try store.backup(id: id) }) { return known }
        // A copy of the sealed file in the vault (ciphertext: nothing opened touches the disk), so
        // the record never points at the operator's file, which pruning would remove.
        let kept = "\(vault.directory)/\(id)-recover.upkb"
        do {
            try FileManager.default.createDirectory(atPath: vault.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if !FileManager.default.fileExists(atPath: kept) { try FileManager.default.copyItem(atPath: text, toPath: kept) }
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: kept)
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: "cannot keep a copy of \(text) in \(vault.directory): \(error)")
        }
        let record = BackupRecord(id: id, rolloutID: nil, takenAt: Instant.wallClockNow(), node: "-", format: isTar ? "sqliteTar" : "etcdSnapshot",
                                  agentFile: (text as NSString).lastPathComponent, path: kept, bytes: opened.bytes, sha256: opened.sha256,
                                  k3sVersion: given, kind: .manual)
        try storeCall { try store.recordBackup(record) }
        return record
    }
}

/// Where a recovery reaches each node's agent: the last known inventory, overridden or
/// extended by `--agent NODE=HOST:PORT`; and what each agent says of itself.
struct RecoveryAddressBook {
    struct Entry {
        var name: String
        var endpoint: AgentEndpoint?
        var knownRole: UpkeepCore.NodeRole?
        var knownArch: Arch?
        var info: AgentInfo?
        var problem: String?

        var recoveryNode: RecoveryNode? {
            guard let info, let version = info.k3sVersion.flatMap({ try? K3sVersion($0) }), let arch = try? Arch(info.arch) else { return nil }
            return RecoveryNode(name: name, role: info.role == .server ? .server : .agent, arch: arch, version: version)
        }
    }

    var entries: [Entry]

    static func parse(_ flag: String) -> (String, AgentEndpoint)? {
        let parts = flag.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty, let endpoint = AgentEndpoint(String(parts[1])) else { return nil }
        return (String(parts[0]), endpoint)
    }

    init(store: StateStore, flags: [String]) throws {
        let known = try storeCall { try store.agentInventory() }
        entries = known.map { Entry(name: $0.node, endpoint: $0.endpoint.flatMap(AgentEndpoint.init), knownRole: $0.role, knownArch: $0.arch) }
        for flag in flags {
            guard let (name, endpoint) = Self.parse(flag) else { continue }
            if let index = entries.firstIndex(where: { $0.name == name }) { entries[index].endpoint = endpoint } else {
                entries.append(Entry(name: name, endpoint: endpoint))
            }
        }
        guard !entries.isEmpty else {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "no agent is known: the controller never read this cluster; give every node with --agent NODE=HOST:PORT")
        }
    }

    /// The fleet's address book as a reading (roles as last known; the agents say the rest).
    var reading: FleetReading {
        FleetReading(nodes: entries.map { entry in
            FleetNode(node: InventoryNode(name: entry.name, role: entry.knownRole ?? .agent, arch: entry.knownArch ?? .amd64,
                                          version: K3sVersion(major: 0, minor: 0, patch: 0), ready: false),
                      agent: entry.endpoint, agentProblem: entry.endpoint == nil ? "no address known" : nil)
        }, volumes: [])
    }

    /// Asks every agent its Hello (in parallel), which names its role, arch and k3s version.
    func ask(_ fleet: AgentFleet) async -> [Entry] {
        await withTaskGroup(of: Entry.self) { group in
            for entry in entries {
                group.addTask {
                    var answered = entry
                    do {
                        answered.info = try await fleet.client(for: entry.name).connection().hello.agent
                    } catch {
                        answered.problem = "\(error)"
                    }
                    return answered
                }
            }
            var all: [Entry] = []
            for await entry in group { all.append(entry) }
            return all.sorted { $0.name < $1.name }
        }
    }
}
