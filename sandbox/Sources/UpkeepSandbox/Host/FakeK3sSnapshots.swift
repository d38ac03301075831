import Foundation
import UpkeepCore
import UpkeepProcess

/// `k3s etcd-snapshot save` and `k3s server --cluster-reset [--cluster-reset-restore-path=FILE]`
/// of the fake k3s, on the server's real etcd member
/// (https://docs.k3s.io/cli/etcd-snapshot, https://docs.k3s.io/datastore/backup-restore):
/// snapshots are etcd's own (`etcdctl snapshot save`), a restore is etcd's own (`etcdctl
/// snapshot restore` into a new single-member cluster, https://etcd.io/docs/v3.4/op-guide/recovery/).
extension FakeK3s {
    // MARK: - etcd-snapshot

    static func snapshot(node: SandboxNode, arguments: [String]) async throws -> Int32 {
        var arguments = arguments
        if arguments.first == "save" { arguments.removeFirst() }
        guard node.isServer else { return fatal("etcd-snapshot must be run on a server node") }
        guard node.datastore == "etcd" else { return fatal("etcd datastore disabled") }
        var base = "on-demand"
        var directory = node.snapshotDir
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            func value() -> String? {
                if let equals = argument.firstIndex(of: "=") { return String(argument[argument.index(after: equals)...]) }
                index += 1
                return index < arguments.count ? arguments[index] : nil
            }
            if argument.hasPrefix("--name") { base = value() ?? base }
            else if argument.hasPrefix("--dir") || argument.hasPrefix("--etcd-snapshot-dir") { directory = value() ?? directory }
            else if argument == "--etcd-snapshot-compress" || argument == "--compress" {
                return fatal("the sandbox's k3s saves snapshots uncompressed; leave out --etcd-snapshot-compress")
            }
            index += 1
        }
        guard isRunning(node) else { return fatal("etcd-snapshot: failed to get etcd status: k3s is not running on this node") }
        let name = "\(base)-\(node.name)-\(Int(Date().timeIntervalSince1970))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = "\(directory)/\(name)"
        log("info", "Saving etcd snapshot to \(path)")
        let saved = try await EtcdMember.etcdctl(["--endpoints", node.datastoreURL, "--dial-timeout", "5s", "--command-timeout", "120s",
                                                  "snapshot", "save", path], timeoutSeconds: 180)
        guard saved.status == 0 else {
            unlink(path)
            unlink("\(path).part")
            return fatal("etcd-snapshot: failed to save snapshot: \(lastLine(saved.output))")
        }
        chmod(path, 0o600)
        log("info", "Snapshot \(name) saved.")
        return 0
    }

    static func lastLine(_ output: String) -> String {
        output.split(separator: "\n").last.map(String.init) ?? "(no output)"
    }

    static func currentVersion(_ node: SandboxNode) -> String? {
        guard let script = try? String(contentsOfFile: node.k3sBinary, encoding: .utf8),
              let range = script.range(of: "\(versionVariable)='")
        else { return nil }
        return String(script[range.upperBound...].prefix { $0 != "'" })
    }

    // MARK: - cluster-reset

    /// The line k3s prints when a reset is done (and the reason the caller waits for it).
    public static let resetLine = "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes"

    static func clusterReset(node: SandboxNode, version: String, arguments: [String]) async -> Int32 {
        guard node.isServer else { return fatal("--cluster-reset is only valid on servers") }
        guard node.datastore == "etcd" else { return fatal("--cluster-reset requires embedded etcd; this server uses SQLite") }
        guard !isRunning(node) else {
            return fatal("starting kubernetes: preparing server: k3s is already running on this node; stop it first (systemctl stop k3s)")
        }
        log("info", "Starting k3s \(version) (\(commit(of: version)))")
        let member = EtcdMember(node: node)
        do {
            if let restore = arguments.first(where: { $0.hasPrefix("--cluster-reset-restore-path=") }) {
                try await restoreSnapshot(String(restore.dropFirst("--cluster-reset-restore-path=".count)), member: member)
            } else {
                try await resetMembership(member)
            }
        } catch {
            return fatal("starting kubernetes: preparing server: \(error)")
        }
        log("info", resetLine)
        return 0
    }

    /// Moves the member aside (`db/etcd-old-<unix time>`, as k3s does) and restores `path` into a
    /// new single-member cluster of this node.
    static func restoreSnapshot(_ path: String, member: EtcdMember) async throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SandboxError("etcd: snapshot restore failed: \(path) does not exist")
        }
        let status = try await EtcdMember.etcdctl(["snapshot", "status", path, "-w", "json"], timeoutSeconds: 60)
        guard status.status == 0 else {
            throw SandboxError("etcd: snapshot restore failed: \(path) is not an etcd snapshot: \(lastLine(status.output))")
        }
        let database = (member.directory as NSString).deletingLastPathComponent
        if FileManager.default.fileExists(atPath: member.directory) {
            let old = "\(database)/etcd-old-\(Int(Date().timeIntervalSince1970))"
            try FileManager.default.moveItem(atPath: member.directory, toPath: old)
            log("info", "Pre-restore etcd database moved to \(old)")
        }
        let name = member.newName()
        let staging = "\(database)/.etcd-restore-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        let restored = try await EtcdMember.etcdctl(["snapshot", "restore", path, "--data-dir", staging, "--name", name,
                                                     "--initial-cluster", "\(name)=\(member.peerURL)",
                                                     "--initial-advertise-peer-urls", member.peerURL,
                                                     "--initial-cluster-token", "\(name)-restored"], timeoutSeconds: 300)
        guard restored.status == 0 else {
            try? FileManager.default.removeItem(atPath: staging)
            throw SandboxError("etcd: snapshot restore failed: \(lastLine(restored.output))")
        }
        chmod(staging, 0o700)
        try FileManager.default.moveItem(atPath: staging, toPath: member.directory)
        try JSONFiles.atomicWrite(Data((name + "\n").utf8), to: member.nameFile, mode: 0o600)
        log("info", "etcd snapshot \(path) restored as member \(name) of a new cluster at \(member.peerURL)")
    }

    /// Starts the member with `--force-new-cluster` (a cluster of itself, its data kept), waits
    /// until it serves, and stops it again.
    static func resetMembership(_ member: EtcdMember) async throws {
        guard FileManager.default.fileExists(atPath: member.memberDirectory) else {
            throw SandboxError("etcd: no member data in \(member.directory) to reset; restore a snapshot with --cluster-reset-restore-path=FILE")
        }
        let name = try member.name()
        let (pid, lifeline) = try member.spawn(member.arguments(name: name, initialCluster: "\(name)=\(member.peerURL)", state: "new",
                                                                token: nil, forceNewCluster: true))
        defer {
            close(lifeline)
            unlink(member.pidFile)
        }
        let gateway = EtcdGateway(endpoints: [member.clientURL], callTimeoutSeconds: 2, attemptTimeoutSeconds: 2)
        let deadline = Date().addingTimeInterval(60)
        var ready = false
        while !ready, Date() < deadline, await ProcessRun.reap(pid, timeoutSeconds: 0) == nil {
            ready = (try? await gateway.get(ServerDatastore.probeKey)) != nil
            if !ready { try await Task.sleep(nanoseconds: 200_000_000) }
        }
        kill(pid, SIGTERM)
        if await ProcessRun.reap(pid, timeoutSeconds: ServerDatastore.stopGraceSeconds) == nil {
            kill(pid, SIGKILL)
            _ = await ProcessRun.reap(pid, timeoutSeconds: 5)
        }
        guard ready else { throw SandboxError("etcd: the member did not serve within 60 s of --force-new-cluster; see \(member.logFile)") }
    }
}
