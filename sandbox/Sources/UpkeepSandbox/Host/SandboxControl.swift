import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepKube

/// What `upkeep sandbox status` and `upkeep sandbox fault` do, behind the command line.
public enum SandboxControl {
    /// The node table: role, address, version and Ready as the API reports them, the k3s unit,
    /// the node's agent, and the faults set for it. Nil with a reason when no sandbox runs.
    public static func status(directory: String) async throws -> (running: Bool, text: String) {
        guard let pid = SandboxDaemon.runningPID(directory), let manifest = try? SandboxManifest.load(directory: directory) else {
            let stale = (try? SandboxManifest.load(directory: directory)) != nil
            return (false, stale ? "the sandbox in \(directory) is not running (its process is gone); run `upkeep sandbox down --dir \(directory)` to clean up"
                                  : "no sandbox runs in \(directory); start one with `upkeep sandbox up --dir \(directory)`")
        }
        var nodes: [String: Node] = [:]
        var apiProblem: String?
        var datastore: JSON?
        do {
            let client = try KubeClient(endpoint: try Kubeconfig.load(path: manifest.kubeconfig).endpoint(), requestTimeoutSeconds: 5)
            do {
                for node in try await client.list(Node.self) { nodes[node.name] = node }
                datastore = try? await client.request(.GET, "/sandbox/v1/datastore")
            } catch {
                apiProblem = "\(error)"
            }
            await client.shutdown()
        } catch {
            apiProblem = "\(error)"
        }
        let faults = SandboxFaults.load(manifest.faultsFile)
        var lines = ["sandbox in \(directory): running (pid \(pid)), \(manifest.nodes.count) nodes" + (manifest.netns ? " in network namespaces" : ""),
                     "API       \(manifest.apiURL) (kubeconfig \(manifest.kubeconfig))",
                     "releases  \(manifest.releaseURL) (k3s \(manifest.availableK3sVersions.joined(separator: ", ")))"]
        if let apiProblem { lines.append("the API did not answer: \(apiProblem)") }
        lines.append(datastoreLine(manifest, datastore))
        var rows = [["NODE", "ROLE", "ADDRESS", "VERSION", "READY", "K3S", "AGENT", "FAULTS"]]
        for node in manifest.nodes {
            let unit = SystemctlStandIn.currentState(node)
            let api = nodes[node.name]
            var nodeFaults: [String] = []
            if let fault = faults.nodes[node.name], !fault.isEmpty { nodeFaults.append("k3s " + fault.summary) }
            if let seconds = faults.rebuildSeconds?[node.name] { nodeFaults.append("rebuild \(Int(seconds)) s") }
            if faults.agentsDown?.contains(node.name) == true { nodeFaults.append("agent down") }
            if faults.dnsDown?.contains(node.name) == true { nodeFaults.append("cluster DNS unreachable") }
            if faults.kubeletPortBlocked?.contains(node.name) == true { nodeFaults.append("kubelet port \(SandboxNode.kubeletPort) closed") }
            rows.append([node.name, node.role, node.address, api?.kubeletVersion ?? "?", api?.readyStatus ?? "?",
                         unit.activeState + (unit.mainPID > 0 ? " (pid \(unit.mainPID))" : ""),
                         agentState(node), nodeFaults.isEmpty ? "-" : nodeFaults.joined(separator: "; ")])
        }
        lines += table(rows)
        var global: [String] = []
        if faults.releasesRateLimited { global.append("release API rate-limited") }
        if faults.corruptBinaries { global.append("corrupt k3s binaries") }
        global += faults.releaseFaults?.summary ?? []
        if !global.isEmpty { lines.append("release faults: " + global.joined(separator: ", ")) }
        return (true, lines.joined(separator: "\n"))
    }

    /// `datastore etcd, 3 members (…:2379, …), revision 412, synced` and what went wrong last.
    static func datastoreLine(_ manifest: SandboxManifest, _ summary: JSON?) -> String {
        let servers = manifest.nodes.filter(\.isServer)
        let kind = servers.count > 1 ? "etcd, \(servers.count) members" : "kine (SQLite) on \(servers.first?.name ?? "?")"
        var line = "datastore \(kind) (\(servers.map(\.datastoreURL).joined(separator: ", ")))"
        guard let summary else { return line + ", state unknown" }
        line += (summary["synced"]?.bool == true ? ", revision \(summary["revision"]?.int ?? 0)" : ", not reachable")
        if let reloads = summary["reloads"]?.int, reloads > 0 { line += ", read back \(reloads) times (restores)" }
        if let refused = summary["refused"]?.int, refused > 0 { line += ", \(refused) writes refused" }
        if let error = summary["lastError"]?.string { line += "; last error: \(error)" }
        return line
    }

    /// `running (pid N) host:port`, `stopped`, or `-` when the sandbox runs no agents.
    static func agentState(_ node: SandboxNode) -> String {
        if let pid = SandboxAgents.runningPID(node) { return "running (pid \(pid)) \(node.agentAddress)" }
        return FileManager.default.fileExists(atPath: node.agentConfigFile) ? "stopped" : "-"
    }

    static func table(_ rows: [[String]]) -> [String] {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }

    /// The faults `upkeep sandbox fault` knows, with what they take.
    public static let faultKinds: [(name: String, help: String)] = [
        ("unhealthy", "k3s starts but never becomes healthy (kubelet healthz fails, the node turns NotReady)"),
        ("exit-at-start", "k3s exits with an error right after it starts"),
        ("slow-start SECONDS", "k3s becomes healthy only SECONDS after it starts"),
        ("slow-rebuild SECONDS", "Longhorn replicas on the node take SECONDS to rebuild when it returns"),
        ("agent-down", "the node's upkeep-agent is stopped and kept down"),
        ("etcd-stop", "the server's etcd member is frozen (SIGSTOP): it answers nothing, its k3s keeps running, the others keep quorum"),
        ("dns-down", "the node's path to the cluster DNS Service is broken: its queries get no answer (the other nodes' still do)"),
        ("kubelet-port", "the node's kubelet port (TCP 10250) is closed to the other nodes, as a host firewall rejecting it would (connects are refused); k3s keeps running"),
        ("clear", "removes every fault of the node (an agent kept down is started again, the kubelet port opened again)"),
        ("releases rate-limit [SECONDS]", "(NODE = releases, or release-server) the releases API answers 403 \"API rate limit exceeded\" with x-ratelimit-remaining: 0; until cleared, or with SECONDS until the window resets SECONDS after the first refusal"),
        ("releases retry-after SECONDS [--requests N] [--status 403|429]", "(NODE = releases) GitHub's secondary limit: the next N API requests (1) are refused with retry-after: SECONDS"),
        ("releases corrupt-json [REPO]", "(NODE = releases) release lists of REPO (k3s-io/k3s, fluxcd/flux2, longhorn/longhorn, or channels; all without REPO) are cut in half"),
        ("releases hang", "(NODE = releases) the release server accepts every request and never answers"),
        ("releases drop-asset NAME [--k3s-version TAG]", "(NODE = releases) the asset NAME (e.g. k3s-armhf) disappears from release TAG (every release without it)"),
        ("releases page-size N", "(NODE = releases) the releases API returns at most N releases per page"),
        ("releases corrupt-binaries", "(NODE = releases) k3s binaries no longer match their checksums"),
        ("releases wrong-digests", "(NODE = releases) the releases API reports other digests for k3s binaries than the downloads and checksum files have"),
        ("releases no-digests", "(NODE = releases) the releases API reports no asset digests (digest: null), as for releases before June 2025"),
        ("releases clear", "(NODE = releases) the release server behaves again"),
        ("longhorn upgrade-fails | clear", "(NODE = longhorn) the Longhorn HelmRelease fails its next upgrades (UpgradeFailed; Longhorn stays) / succeeds again (clear also undoes the next two)"),
        ("longhorn fails-after-manager", "(NODE = longhorn) the next upgrades move Longhorn's manager to the new version, then the HelmRelease fails (UpgradeFailed): a revert would be a downgrade, which Longhorn blocks"),
        ("longhorn snapshots-stuck [VOLUME]", "(NODE = longhorn) Longhorn Snapshots of VOLUME (of every volume without it) never become readyToUse"),
        ("flux upgrade-fails | clear", "(NODE = flux) the flux-system Kustomization fails to apply new Flux components (Flux stays) / applies them again"),
        ("api stall-writes SECONDS --resource PLURAL | clear", "(NODE = api) every write (create, update, patch, delete) of PLURAL (e.g. helmreleases) waits SECONDS and then fails with 504 Timeout, not applied / writes work again"),
    ]

    /// Sets one fault in `DIR/faults.json` and returns what was done, in words.
    ///
    /// k3s faults (`unhealthy`, `exit-at-start`, `slow-start`) apply when the node's k3s next
    /// starts; by default only at versions other than the one the node runs now (that is, after
    /// an upgrade); `version` limits them to one version, `anyVersion` applies them to all.
    public static func setFault(directory: String, node: String, kind: String, value: String?, version: String?,
                                anyVersion: Bool, releaseOptions: ReleaseFaultOptions = ReleaseFaultOptions(), resource: String? = nil) async throws -> String
    {
        guard let manifest = try? SandboxManifest.load(directory: directory) else {
            throw SandboxError("no sandbox in \(directory) (no sandbox.json); start one with `upkeep sandbox up --dir \(directory)`")
        }
        var faults = SandboxFaults.load(manifest.faultsFile)
        func seconds() throws -> Double {
            guard let value, let seconds = Double(value), seconds >= 0, seconds <= 86_400 else {
                throw SandboxError("\(kind) needs a number of seconds between 0 and 86400, e.g. `upkeep sandbox fault --dir \(directory) \(node) \(kind) 30`")
            }
            return seconds
        }
        let message: String
        if node == "releases" || node == "release-server" {
            message = try setReleaseFault(&faults, kind: kind, value: value, version: version, options: releaseOptions, directory: directory)
            try JSONFiles.write(faults, to: manifest.faultsFile)
            return message
        }
        if node == "api" {
            var stalls = faults.apiWriteStallSeconds ?? [:]
            switch kind {
            case "stall-writes":
                guard let resource, ServedResource.all.contains(where: { $0.type.plural == resource }) else {
                    throw SandboxError("stall-writes needs --resource PLURAL, a resource the API serves (e.g. helmreleases, kustomizations, configmaps)")
                }
                stalls[resource] = try seconds()
                message = "writes of \(resource) now wait \(Int(stalls[resource] ?? 0)) s and fail unapplied (504)"
            case "clear":
                stalls = [:]
                message = "writes work again"
            default:
                throw SandboxError("unknown api fault \(kind); use stall-writes or clear")
            }
            faults.apiWriteStallSeconds = stalls.isEmpty ? nil : stalls
            try JSONFiles.write(faults, to: manifest.faultsFile)
            try await waitForWriteStalls(stalls, manifest: manifest)
            return message
        }
        let components: [String: (flag: WritableKeyPath<SandboxFaults, Bool?>, fails: String, clear: String)] = [
            "longhorn": (\.longhornUpgradeFails, "the Longhorn HelmRelease now fails its upgrades (Longhorn stays where it is)",
                         "Longhorn upgrades succeed again"),
            "flux": (\.fluxUpgradeFails, "the flux-system Kustomization now fails to apply new Flux components (Flux stays where it is)",
                     "Flux upgrades apply again"),
        ]
        if node == "longhorn", kind == "fails-after-manager" || kind == "snapshots-stuck" || kind == "clear" {
            var longhorn = faults.longhorn ?? LonghornFaults()
            switch kind {
            case "fails-after-manager":
                longhorn.failsAfterManager = true
                message = "Longhorn's next upgrades move its manager to the new version, then the HelmRelease fails"
            case "snapshots-stuck":
                let volume = value ?? "*"
                longhorn.snapshotsStuck = Array(Set(longhorn.snapshotsStuck + [volume])).sorted()
                message = value.map { "Longhorn snapshots of \($0) now never become ready" } ?? "Longhorn snapshots now never become ready"
            default:
                longhorn = LonghornFaults()
                faults.longhornUpgradeFails = false
                message = "Longhorn upgrades succeed again and its snapshots become ready"
            }
            faults.longhorn = longhorn == LonghornFaults() ? nil : longhorn
            try JSONFiles.write(faults, to: manifest.faultsFile)
            return message
        }
        if let component = components[node] {
            switch kind {
            case "upgrade-fails": faults[keyPath: component.flag] = true; message = component.fails
            case "clear": faults[keyPath: component.flag] = false; message = component.clear
            default: throw SandboxError("unknown \(node) fault \(kind); use upgrade-fails\(node == "longhorn" ? ", fails-after-manager, snapshots-stuck" : "") or clear")
            }
            try JSONFiles.write(faults, to: manifest.faultsFile)
            return message
        }
        guard let target = manifest.nodes.first(where: { $0.name == node }) else {
            throw SandboxError("no node \(node) in this sandbox; nodes: \(manifest.nodes.map(\.name).joined(separator: ", ")) (or `releases`, `longhorn`, `flux`)")
        }
        var k3s = K3sFault()
        var scope = ""
        if let version {
            k3s.onlyVersion = version
            scope = " at \(version)"
        } else if !anyVersion {
            let running = FakeK3s.currentVersion(target) ?? manifest.k3sVersion
            k3s.exceptVersion = running
            scope = " once it runs a version other than \(running) (after an upgrade)"
        }
        switch kind {
        case "unhealthy":
            k3s.neverHealthy = true
            faults.nodes[node] = k3s
            message = "k3s on \(node) will never become healthy\(scope); it takes effect when k3s next starts"
        case "exit-at-start":
            k3s.exitAtStart = true
            faults.nodes[node] = k3s
            message = "k3s on \(node) will exit at start\(scope)"
        case "slow-start":
            k3s.healthyAfterSeconds = try seconds()
            faults.nodes[node] = k3s
            message = "k3s on \(node) will become healthy \(Int(k3s.healthyAfterSeconds ?? 0)) s after it starts\(scope)"
        case "slow-rebuild":
            let value = try seconds()
            faults.rebuildSeconds = (faults.rebuildSeconds ?? [:]).merging([node: value]) { $1 }
            message = "Longhorn replicas on \(node) now take \(Int(value)) s to rebuild"
        case "agent-down":
            faults.agentsDown = Array(Set((faults.agentsDown ?? []) + [node])).sorted()
            message = "the upkeep-agent of \(node) is stopped and kept down"
        case "etcd-stop":
            try signalEtcd(target, SIGSTOP)
            faults.etcdStopped = Array(Set((faults.etcdStopped ?? []) + [node])).sorted()
            message = "the etcd member of \(node) is frozen; `clear` lets it run again"
        case "dns-down":
            faults.dnsDown = Array(Set((faults.dnsDown ?? []) + [node])).sorted()
            message = "queries from \(node) to the cluster DNS Service now get no answer"
        case "kubelet-port":
            faults.kubeletPortBlocked = Array(Set((faults.kubeletPortBlocked ?? []) + [node])).sorted()
            message = "the kubelet port \(SandboxNode.kubeletPort) of \(node) is closed to the other nodes; `clear` opens it again"
        case "clear":
            faults.nodes[node] = nil
            faults.rebuildSeconds?[node] = nil
            faults.agentsDown?.removeAll { $0 == node }
            faults.dnsDown?.removeAll { $0 == node }
            faults.kubeletPortBlocked?.removeAll { $0 == node }
            if faults.etcdStopped?.contains(node) == true {
                try? signalEtcd(target, SIGCONT)
                faults.etcdStopped?.removeAll { $0 == node }
            }
            message = "\(node) has no faults now"
        default:
            throw SandboxError("unknown fault \(kind); known: \(faultKinds.map(\.name).joined(separator: ", "))")
        }
        let before = SandboxFaults.load(manifest.faultsFile)
        let agentWasDown = before.agentsDown?.contains(node) ?? false
        let dnsWasDown = before.dnsDown?.contains(node) ?? false
        let portWasClosed = before.kubeletPortBlocked?.contains(node) ?? false
        try JSONFiles.write(faults, to: manifest.faultsFile)
        // The sandbox process stops and restarts agents; what this command says must already be
        // true when it returns, so a command run right after sees the agent down (or back).
        if kind == "agent-down" {
            try await waitForAgent(target, running: false, in: directory)
        } else if kind == "clear" && agentWasDown {
            try await waitForAgent(target, running: true, in: directory)
        }
        if kind == "dns-down" || (kind == "clear" && dnsWasDown) {
            try await waitForClusterDNS(Set(faults.dnsDown ?? []), manifest: manifest)
        }
        if kind == "kubelet-port" {
            try await waitForKubeletPort(target, open: false, in: directory)
        } else if kind == "clear" && portWasClosed && FakeK3s.isRunning(target) {
            try await waitForKubeletPort(target, open: true, in: directory)
        }
        return message
    }

    /// Sends `signal` to the node's etcd member (https://etcd.io/docs/v3.4/faq/: a member that
    /// answers nothing counts as down; the others keep quorum).
    static func signalEtcd(_ node: SandboxNode, _ signal: Int32) throws {
        guard node.datastore == "etcd", let text = try? String(contentsOfFile: node.etcdPIDFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), Spawn.isAlive(pid) else {
            throw SandboxError("\(node.name) runs no etcd member now (a server of a sandbox with several servers, while its k3s runs)")
        }
        guard kill(pid, signal) == 0 else { throw SandboxError("cannot signal the etcd member of \(node.name) (pid \(pid)): errno \(errno)") }
    }

    /// Extra settings of the release server's faults (`--requests`, `--status` of retry-after).
    public struct ReleaseFaultOptions: Sendable {
        public var requests: Int?
        public var status: Int?
        public init(requests: Int? = nil, status: Int? = nil) {
            self.requests = requests
            self.status = status
        }
    }

    /// Sets (or clears) one release-server fault in `faults`; returns what now happens, in words.
    public static func setReleaseFault(_ faults: inout SandboxFaults, kind: String, value: String?, version: String?,
                                options: ReleaseFaultOptions, directory: String, now: Double = Date().timeIntervalSince1970) throws -> String
    {
        var release = faults.releaseFaults ?? ReleaseFaults()
        func number(_ range: ClosedRange<Double>, example: String) throws -> Double {
            guard let value, let number = Double(value), range.contains(number) else {
                throw SandboxError("\(kind) needs a number between \(Int(range.lowerBound)) and \(Int(range.upperBound)), e.g. `upkeep sandbox fault --dir \(directory) releases \(kind) \(example)`")
            }
            return number
        }
        let message: String
        switch kind {
        case "rate-limit":
            if value == nil {
                faults.releasesRateLimited = true
                message = "the releases API now answers 403 (rate limit exhausted) until `releases clear`"
            } else {
                let seconds = try number(1...3600, example: "5")
                release.rateLimitReset = .init(resetSeconds: seconds, armedAt: now)
                message = "the releases API now answers 403 (rate limit exhausted); the limit resets \(Int(seconds)) s after the first refusal"
            }
        case "retry-after":
            let seconds = Int(try number(0...3600, example: "2"))
            let requests = options.requests ?? 1
            let status = options.status ?? 403
            guard (1...1000).contains(requests), status == 403 || status == 429 else {
                throw SandboxError("retry-after takes --requests between 1 and 1000 and --status 403 or 429")
            }
            release.secondaryLimit = .init(retryAfterSeconds: seconds, requests: requests, status: status, armedAt: now)
            message = "the next \(requests) releases API request(s) hit a secondary limit (HTTP \(status), retry-after: \(seconds))"
        case "corrupt-json":
            let targets = ["k3s-io/k3s", "fluxcd/flux2", "longhorn/longhorn", "channels"]
            if let value, !targets.contains(value) {
                throw SandboxError("corrupt-json takes one of \(targets.joined(separator: ", ")), or nothing for all of them")
            }
            release.corruptJSON = Array(Set((release.corruptJSON ?? []) + [value ?? "*"])).sorted()
            message = "the release server now cuts \(value.map { "the answers for \($0)" } ?? "every list answer") in half"
        case "hang":
            release.hang = true
            message = "the release server now accepts requests and never answers"
        case "drop-asset":
            guard let value, !value.isEmpty, !value.contains("/") else {
                throw SandboxError("drop-asset needs an asset name, e.g. `upkeep sandbox fault --dir \(directory) releases drop-asset k3s-armhf --k3s-version v1.31.4+k3s1`")
            }
            release.droppedAssets = (release.droppedAssets ?? []) + [.init(name: value, tag: version)]
            message = "\(value) is gone from \(version.map { "release \($0)" } ?? "every release")"
        case "page-size":
            let size = Int(try number(1...100, example: "2"))
            release.pageSizeMax = size
            message = "the releases API now returns at most \(size) releases per page"
        case "corrupt-binaries":
            faults.corruptBinaries = true
            message = "the release server now serves corrupted k3s binaries"
        case "wrong-digests":
            release.wrongDigests = true
            message = "the releases API now reports wrong digests for k3s binaries (downloads and checksum files unchanged)"
        case "no-digests":
            release.noDigests = true
            message = "the releases API now reports no digests (as for releases before June 2025)"
        case "clear":
            faults.releasesRateLimited = false
            faults.corruptBinaries = false
            faults.releaseFaults = nil
            return "the release server behaves again"
        default:
            throw SandboxError("unknown release fault \(kind); use rate-limit, retry-after, corrupt-json, hang, drop-asset, page-size, corrupt-binaries, wrong-digests, no-digests or clear")
        }
        faults.releaseFaults = release.isEmpty ? nil : release
        return message
    }

    /// Most seconds `fault` waits for the sandbox process to stop or restart an agent.
    static let agentChangeSecondsMax = 30.0

    /// Waits (bounded) until the sandbox process applies `stalls` (it reads faults.json every quarter second).
    private static func waitForWriteStalls(_ stalls: [String: Double], manifest: SandboxManifest) async throws {
        let client = try KubeClient(endpoint: try Kubeconfig.load(path: manifest.kubeconfig).endpoint(), requestTimeoutSeconds: 5)
        defer { Task { await client.shutdown() } }
        let deadline = Date().addingTimeInterval(agentChangeSecondsMax)
        while Date() < deadline {
            let state = try? await client.request(.GET, "/sandbox/v1/state")
            if let applied = state?["writeStalls"]?.object?.compactMapValues(\.double), applied == stalls { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw SandboxError("the sandbox did not apply the API fault within \(Int(agentChangeSecondsMax)) s; is it still running? "
                           + "(`upkeep sandbox status --dir \(manifest.directory)`)")
    }

    /// Waits (bounded) until the sandbox process breaks the cluster DNS paths of `broken`, and
    /// only theirs (it reads faults.json every quarter second).
    private static func waitForClusterDNS(_ broken: Set<String>, manifest: SandboxManifest) async throws {
        let client = try KubeClient(endpoint: try Kubeconfig.load(path: manifest.kubeconfig).endpoint(), requestTimeoutSeconds: 5)
        defer { Task { await client.shutdown() } }
        let deadline = Date().addingTimeInterval(agentChangeSecondsMax)
        while Date() < deadline {
            let state = try? await client.request(.GET, "/sandbox/v1/state")
            if let applied = state?[path: "clusterDNS", "broken"]?.array?.compactMap(\.string), Set(applied) == broken { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw SandboxError("the sandbox did not apply the cluster DNS fault within \(Int(agentChangeSecondsMax)) s; is it still running? "
                           + "(`upkeep sandbox status --dir \(manifest.directory)`)")
    }

    /// Waits (bounded) until the node's k3s has closed, or opened again, its kubelet port (it
    /// looks at faults.json every quarter second): what `fault` says is true when it returns.
    private static func waitForKubeletPort(_ node: SandboxNode, open: Bool, in directory: String) async throws {
        let deadline = Date().addingTimeInterval(agentChangeSecondsMax)
        while Date() < deadline {
            let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1)).connect(host: node.address, port: SandboxNode.kubeletPort).get()
            try? await channel?.close()
            if (channel != nil) == open { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw SandboxError("the k3s of \(node.name) did not \(open ? "open" : "close") its kubelet port \(SandboxNode.kubeletPort) within "
                           + "\(Int(agentChangeSecondsMax)) s; is its k3s running? (`upkeep sandbox status --dir \(directory)`, \(node.logFile))")
    }

    private static func waitForAgent(_ node: SandboxNode, running: Bool, in directory: String) async throws {
        let deadline = Date().addingTimeInterval(agentChangeSecondsMax)
        while (SandboxAgents.runningPID(node) != nil) != running {
            guard Date() < deadline else {
                throw SandboxError("""
                    the sandbox did not \(running ? "restart" : "stop") the upkeep-agent of \(node.name) within \(Int(agentChangeSecondsMax)) s; \
                    is the sandbox still running? (`upkeep sandbox status --dir \(directory)`, \(directory)/sandbox.log)
                    """)
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        if running, let pid = SandboxAgents.runningPID(node) {
            try await SandboxAgents.waitListening(node, pid: pid, timeoutSeconds: max(1, deadline.timeIntervalSinceNow))
        }
    }
}
