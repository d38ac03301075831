import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepCore
import UpkeepSandbox
import UpkeepStore
import UpkeepTestSupport
import UpkeepPOSIX

/// One sandbox cluster for one end-to-end test, driven only from outside: the built `upkeep`
/// binary (`sandbox up|fault|down`, `apply`, `resume`, `history`), the agents' own files, and
/// the real `kubectl` as the witness of what the cluster looks like.
final class EndToEndSandbox: Sendable {
    let directory: String
    let upkeep: String
    /// The controller configuration the tests use: the sandbox's own, with short waits.
    let config: String
    let manifest: SandboxManifest

    /// The policy for tests: the sandbox restarts k3s at once and rebuilds replicas in a second,
    /// so every wait can be short and the cluster is read five times a second.
    static let policy = "policy: {concurrency: 1, gateTimeoutSeconds: 60, drainTimeoutSeconds: 60, healthTimeoutSeconds: 8, "
        + "verifyTimeoutSeconds: 60, rebuildTimeoutSeconds: 60, watchdogTimeoutSeconds: 300, pollIntervalMilliseconds: 200, "
        + "autoRollback: true, drain: {deleteEmptyDirData: true}}"

    private init(directory: String, upkeep: String, config: String, manifest: SandboxManifest) {
        self.directory = directory
        self.upkeep = upkeep
        self.config = config
        self.manifest = manifest
    }

    /// Brings a sandbox up in a fresh temporary directory, runs `body`, and always brings it
    /// down again (also when `body` throws), then checks that no process it recorded still runs.
    /// `airgap`: nodes whose k3s imports its images from `agent/images` (`sandbox up --airgap`).
    /// `join`: the nodes enroll with a bootstrap token (`sandbox up --join`). `policy`: the
    /// controller's policy line in place of `EndToEndSandbox.policy`. `prepare` runs before
    /// `sandbox up`, with the sandbox's directory (not created yet).
    static func with(servers: Int, agents: Int, k3sVersion: String, netns: Bool = false,
                     airgap: [String] = [], join: Bool = false, policy: String = policy,
                     prepare: (String) async throws -> Void = { _ in },
                     _ body: (EndToEndSandbox) async throws -> Void) async throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.file("sbx")
        let upkeep = try UpkeepBinary.path()
        try await prepare(directory)
        let up = try await ProcessRun.run(upkeep, ["sandbox", "up", "--dir", directory, "--servers", "\(servers)", "--agents", "\(agents)",
                                                   "--k3s-version", k3sVersion, "--node-grace", "10", "--rebuild-seconds", "1",
                                                   "--ready-timeout", "90"] + (netns ? ["--netns"] : []) + (join ? ["--join"] : [])
                                              + (airgap.isEmpty ? [] : ["--airgap", airgap.joined(separator: ",")]), timeoutSeconds: 150)
        var pids = SandboxDaemon.recordedPIDs(directory)
        var failure: (any Error)?
        do {
            try #require(up.status == 0 && !up.timedOut, "sandbox up failed: \(up.output)")
            let manifest = try SandboxManifest.load(directory: directory)
            let config = try writeConfig(directory: directory, policy: policy)
            let sandbox = EndToEndSandbox(directory: directory, upkeep: upkeep, config: config, manifest: manifest)
            try await body(sandbox)
        } catch {
            failure = error
        }
        pids.formUnion(SandboxDaemon.recordedPIDs(directory))
        let down = try await ProcessRun.run(upkeep, ["sandbox", "down", "--dir", directory], timeoutSeconds: 120)
        #expect(down.status == 0 && !down.timedOut, "sandbox down failed: \(down.output)")
        let survivors = pids.filter { Spawn.isAlive($0) }
        #expect(survivors.isEmpty, "still running after sandbox down: \(survivors.sorted())")
        // Beyond the recorded pids: any process still running from the sandbox's directory is
        // a leak; it is killed so that no test leaves it behind, and reported.
        let strays = strayProcesses(directory)
        for stray in strays { kill(getpgid(stray.pid) == stray.pid ? -stray.pid : stray.pid, SIGKILL) }  // with its group (a supervisor's k3s)
        #expect(strays.isEmpty, "still running from \(directory) after sandbox down: \(strays.map(\.description))")
        if let failure {
            let log = (try? String(contentsOfFile: "\(directory)/sandbox.log", encoding: .utf8)) ?? ""
            Issue.record("sandbox log (end):\n\(log.split(separator: "\n").suffix(30).joined(separator: "\n"))")
            throw failure
        }
    }

    /// Processes whose command line names a path inside `directory` (from /proc).
    static func strayProcesses(_ directory: String) -> [(pid: pid_t, description: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> (pid: pid_t, description: String)? in
            guard let pid = pid_t(entry), pid != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.contains(where: { $0 == directory || $0.hasPrefix(directory + "/") }), Spawn.isAlive(pid) else { return nil }
            return (pid, "\(pid) " + arguments.joined(separator: " "))
        }
    }

    /// `DIR/upkeep.yaml` with `policy` in place of the sandbox's, as `DIR/upkeep-e2e.yaml`.
    private static func writeConfig(directory: String, policy: String) throws -> String {
        let original = try String(contentsOfFile: "\(directory)/upkeep.yaml", encoding: .utf8)
        var lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let index = try #require(lines.firstIndex { $0.hasPrefix("policy:") }, "the sandbox's upkeep.yaml has no policy line:\n\(original)")
        lines[index] = policy
        let path = "\(directory)/upkeep-e2e.yaml"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The test configuration with `cluster: e2e`, `extra` settings and a webhook sink to `url`
    /// signed with `key` (in a 0600 file beside it) for `events`, written as `DIR/name`.
    func configWithWebhook(_ name: String, url: String, key: String, events: [String], extra: String = "") throws -> String {
        let secret = "\(directory)/webhook.secret"
        try (key + "\n").write(toFile: secret, atomically: true, encoding: .utf8)
        chmod(secret, 0o600)
        let path = "\(directory)/\(name)"
        try (String(contentsOfFile: config, encoding: .utf8) + "\ncluster: e2e\n" + extra
             + "notifications:\n  - {type: webhook, url: \"\(url)\", secretFile: webhook.secret, events: [\(events.joined(separator: ", "))]}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    // MARK: Driving the controller

    /// `upkeep --config <test config> ARGUMENTS`, to completion (stdout and stderr together).
    /// `config`: another controller's configuration (`controllerConfig`).
    func controller(_ arguments: [String], config: String? = nil, timeoutSeconds: Double = 180) async throws -> ProcessRun.Outcome {
        let outcome = try await ProcessRun.run(upkeep, ["--config", config ?? self.config] + arguments, timeoutSeconds: timeoutSeconds)
        #expect(!outcome.timedOut, "upkeep \(arguments.joined(separator: " ")) did not finish within \(Int(timeoutSeconds)) s:\n\(outcome.output)")
        return outcome
    }

    /// `upkeep sandbox fault --dir DIR ARGUMENTS`; must succeed.
    func fault(_ arguments: [String]) async throws {
        let outcome = try await ProcessRun.run(upkeep, ["sandbox", "fault", "--dir", directory] + arguments, timeoutSeconds: 30)
        try #require(outcome.status == 0, "sandbox fault \(arguments.joined(separator: " ")) failed: \(outcome.output)")
    }

    /// Starts `upkeep --config <test config> ARGUMENTS` in the background (or with `config`), its output in a file.
    func start(_ arguments: [String], config: String? = nil) throws -> BackgroundRun {
        let log = "\(directory)/run-\(UUID().uuidString.prefix(8)).log"
        let pid = try Spawn.detached([upkeep, "--config", config ?? self.config] + arguments, environment: ProcessInfo.processInfo.environment,
                                     logFile: log, newSession: false, ownGroup: true)
        return BackgroundRun(pid: pid, log: log, what: "upkeep " + arguments.joined(separator: " "))
    }

    /// A controller of its own for this sandbox: the test configuration with the state
    /// directory `DIR/<name>` and `extra` lines appended (e.g. short `lease:` terms), as
    /// `DIR/upkeep-<name>.yaml`. Two of them are two controllers (two state directories).
    func controllerConfig(_ name: String, extra: String = "") throws -> String {
        let original = try String(contentsOfFile: config, encoding: .utf8)
        var lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.hasPrefix("stateDir:") }
        lines.append("stateDir: \(directory)/\(name)")
        if !extra.isEmpty { lines.append(extra) }
        let path = "\(directory)/upkeep-\(name).yaml"
        try lines.joined(separator: "\n").appending("\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    // MARK: Witnesses

    /// The Lease `kube-system/upkeep` as kubectl shows it (its `spec`), nil when there is none.
    func clusterLease() async throws -> [String: Any]? {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "get", "lease", "upkeep", "-n", "kube-system",
                                                           "-o", "json"], timeoutSeconds: 30)
        if outcome.status != 0 && outcome.output.contains("NotFound") { return nil }
        try #require(outcome.status == 0, "kubectl get lease failed: \(outcome.output)")
        let object = try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any]
        return object?["spec"] as? [String: Any] ?? [:]
    }

    /// Writes the Lease `kube-system/upkeep` with `kubectl apply`, as another controller would
    /// hold it: `holder` (nil: given back), renewed `renewedSecondsAgo` before now, for
    /// `durationSeconds`. Must succeed.
    func writeClusterLease(holder: String?, renewedSecondsAgo: Double = 0, durationSeconds: Int) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let renewed = formatter.string(from: Date().addingTimeInterval(-renewedSecondsAgo))
        let file = "\(directory)/lease-\(UUID().uuidString.prefix(8)).json"
        let spec: [String: Any] = ["holderIdentity": holder ?? "", "leaseDurationSeconds": durationSeconds, "acquireTime": renewed, "renewTime": renewed]
        let lease: [String: Any] = ["apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                    "metadata": ["name": "upkeep", "namespace": "kube-system"], "spec": spec]
        try JSONSerialization.data(withJSONObject: lease).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "apply", "-f", file], timeoutSeconds: 30)
        try #require(outcome.status == 0, "kubectl apply of the Lease failed: \(outcome.output)")
    }

    /// A node as `kubectl get nodes -o json` shows it.
    struct NodeView: Equatable, CustomStringConvertible {
        var name: String
        var version: String
        var ready: Bool
        var cordoned: Bool
        var description: String { "\(name) \(version) \(ready ? "Ready" : "NotReady")\(cordoned ? " cordoned" : "")" }
    }

    /// Every node, by name, as the real kubectl reads them from the sandbox's API.
    func nodes() async throws -> [String: NodeView] {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "get", "nodes", "-o", "json"],
                                               timeoutSeconds: 30)
        try #require(outcome.status == 0, "kubectl get nodes failed: \(outcome.output)")
        let object = try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any]
        let items = try #require(object?["items"] as? [[String: Any]], "kubectl printed no items: \(outcome.output)")
        var nodes: [String: NodeView] = [:]
        for item in items {
            let metadata = item["metadata"] as? [String: Any]
            let status = item["status"] as? [String: Any]
            let spec = item["spec"] as? [String: Any]
            let name = try #require(metadata?["name"] as? String)
            let conditions = status?["conditions"] as? [[String: Any]] ?? []
            let ready = conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }
            let version = (status?["nodeInfo"] as? [String: Any])?["kubeletVersion"] as? String ?? "?"
            nodes[name] = NodeView(name: name, version: version, ready: ready, cordoned: spec?["unschedulable"] as? Bool ?? false)
        }
        return nodes
    }

    /// Expects every node Ready at `version` and none cordoned, per kubectl. The API may still
    /// be catching up with a node's last heartbeat, so it is read until that holds (bounded).
    func expectAllNodes(at version: String, _ context: String, timeoutSeconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var seen: [String: NodeView] = [:]
        while true {
            seen = try await nodes()
            let good = seen.count == manifest.nodes.count && seen.values.allSatisfy { $0.version == version && $0.ready && !$0.cordoned }
            if good { return }
            if Date() > deadline { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let nodes = seen.values.map(\.description).sorted().joined(separator: "; ")
        Issue.record("\(context): not every node is Ready, uncordoned and at \(version) within \(Int(timeoutSeconds)) s: \(nodes)")
    }

    /// The rollouts `upkeep history -o json` reports, newest first.
    func history() async throws -> [RolloutRecord] {
        let outcome = try await controller(["history", "-o", "json"], timeoutSeconds: 30)
        try #require(outcome.status == 0, "upkeep history failed: \(outcome.output)")
        return try JSONDecoder().decode([RolloutRecord].self, from: Data(outcome.output.utf8))
    }

    /// `upkeep backup list -o json`.
    func backups() async throws -> [BackupRecord] {
        let outcome = try await controller(["backup", "list", "-o", "json"], timeoutSeconds: 30)
        try #require(outcome.status == 0, "upkeep backup list failed: \(outcome.output)")
        return try JSONDecoder().decode([BackupRecord].self, from: Data(outcome.output.utf8))
    }

    /// Opens the sealed backup `record` with `upkeep backup open` (which checks the SHA-256 the
    /// agent's stream ended with) and checks that the agent's plaintext left its node with the
    /// download; returns the opened file's path.
    func openBackup(_ record: BackupRecord) async throws -> String {
        let output = "\(directory)/opened-\(record.id)"
        let opened = try await controller(["backup", "open", record.id, "-o", output], timeoutSeconds: 30)
        try #require(opened.status == 0, "upkeep backup open failed: \(opened.output)")
        let node = try #require(manifest.nodes.first { $0.name == record.node })
        let plaintext = "\(node.root)/var/lib/upkeep-agent/backups/\(record.agentFile)"
        #expect(!FileManager.default.fileExists(atPath: plaintext), "the agent kept \(plaintext) after it was downloaded")
        let size = try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int
        #expect(size.map(Int64.init) == record.bytes, "the opened backup has \(size ?? -1) bytes, recorded \(record.bytes)")
        return output
    }

    /// `node`'s agent journal, one JSON record a line.
    func journalLines(_ node: String) -> [String] {
        let path = "\(directory)/nodes/\(node)/var/lib/upkeep-agent/journal.jsonl"
        return ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Waits (bounded, polling every 5 ms) until `node`'s journal records `step` of an operation
    /// whose id names `method` (`install`, `restore`, …); returns that operation's id.
    func waitForJournalStep(_ node: String, of method: String, _ step: String, timeoutSeconds: Double = 120) async throws -> String {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let line = journalLines(node).first(where: { $0.contains(":\(method):") && $0.contains("{\"\(step)\":") }),
               let id = line.split(separator: "\"").first(where: { $0.contains(":\(method):") }) {
                return String(id)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw EndToEndFailure("\(node)'s journal shows no \(method) step \(step) within \(Int(timeoutSeconds)) s")
    }

    /// The operation ids `node`'s agent began, in order, from its journal.
    func journalOperationIDs(_ node: String) throws -> [String] {
        journalLines(node).compactMap { line in
            let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let began = (entry?["began"] as? [String: Any])?["_0"] as? [String: Any]
            return began?["id"] as? String
        }
    }

    /// The operations `node`'s agent began, in order, with the moment each began (its journal's
    /// `startedAtUnixMs`, the agent's wall clock).
    func journalBegan(_ node: String) -> [(id: String, atUnixMs: Int64)] {
        let path = "\(directory)/nodes/\(node)/var/lib/upkeep-agent/journal.jsonl"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let began = (entry?["began"] as? [String: Any])?["_0"] as? [String: Any], let id = began["id"] as? String,
                  let at = (began["startedAtUnixMs"] as? NSNumber)?.int64Value else { return nil }
            return (id, at)
        }
    }

    /// Expects that no agent began any operation twice, and that every install ran at its
    /// first attempt (a retry after a crash repeats the id; only a deliberate redo bumps it).
    func expectNothingRanTwice() throws {
        for node in manifest.nodes.map(\.name) {
            let ids = try journalOperationIDs(node)
            let repeated = Dictionary(grouping: ids, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
            #expect(repeated.isEmpty, "\(node)'s agent began these operations more than once: \(repeated)")
            let redone = ids.filter { $0.contains(":install:") && !$0.hasSuffix(":1") }
            #expect(redone.isEmpty, "\(node)'s agent ran installs beyond their first attempt: \(redone)")
        }
    }

    /// Network namespaces need root and ip(8) (CI runs as root).
    static var netnsAvailable: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") }

    /// Sets `node`'s link on the sandbox bridge up or down (`--netns` sandboxes only).
    func setLink(_ node: String, up: Bool) async throws {
        let found = try #require(manifest.nodes.first { $0.name == node }, "no node \(node) in the sandbox")
        let namespace = try #require(found.netns, "\(node) has no network namespace (sandbox not started with --netns)")
        let outcome = try await ProcessRun.run("/usr/sbin/ip", ["-n", namespace, "link", "set", "eth0", up ? "up" : "down"], timeoutSeconds: 20)
        try #require(outcome.status == 0, "ip link set eth0 \(up ? "up" : "down") in \(namespace) failed: \(outcome.output)")
    }

    /// Waits (bounded) until `node`'s agent journal has an entry containing `text`.
    func waitForJournal(_ node: String, containing text: String, timeoutSeconds: Double = 120) async throws {
        let path = "\(directory)/nodes/\(node)/var/lib/upkeep-agent/journal.jsonl"
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains(text) { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw EndToEndFailure("\(node)'s agent journal shows no \(text) within \(Int(timeoutSeconds)) s")
    }

    /// The node's upkeep-agent pid, from its pid file.
    func agentPID(_ node: String) throws -> pid_t? {
        let found = try #require(manifest.nodes.first { $0.name == node }, "no node \(node) in the sandbox")
        return SandboxDaemon.agentPID(found)
    }
}

/// A command running in the background, its stdout and stderr appended to a file that the test
/// reads as it grows.
struct BackgroundRun: Sendable {
    let pid: pid_t
    let log: String
    let what: String

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Waits (bounded) for a line of output that `matches`; fails the test with the output so far
    /// if none appears in time or the command exits first.
    func waitForLine(_ description: String, timeoutSeconds: Double = 120, matches: (String) -> Bool) async throws -> String {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let line = output.split(separator: "\n").map(String.init).first(where: matches) { return line }
            guard Spawn.isAlive(pid) else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if let line = output.split(separator: "\n").map(String.init).first(where: matches) { return line }
        throw EndToEndFailure("\(what): no line showing \(description) within \(Int(timeoutSeconds)) s "
                              + "(running: \(Spawn.isAlive(pid))); output so far:\n\(output)")
    }

    /// Waits for the line the progress view prints when `node` enters `phase`.
    func waitForPhase(_ node: String, _ phase: String, timeoutSeconds: Double = 120) async throws -> String {
        try await waitForLine("\(node) entering \(phase)", timeoutSeconds: timeoutSeconds) { line in
            line.contains(" \(node) v") && line.contains(" -> ") && (line.hasSuffix(" \(phase)") || line.contains(" \(phase) ("))
        }
    }

    /// Waits (bounded) for the command to exit; its exit code, or nil (after killing it) if it did not.
    func exitCode(timeoutSeconds: Double = 180) async -> Int32? {
        if let status = await ProcessRun.reap(pid, timeoutSeconds: timeoutSeconds) { return WaitStatus(status).shellCode }
        kill(-pid, SIGKILL)
        _ = await ProcessRun.reap(pid, timeoutSeconds: 10)
        return nil
    }

    /// SIGKILL, as a crash would end it, and reaps it.
    func killHard() async {
        kill(pid, SIGKILL)
        _ = await ProcessRun.reap(pid, timeoutSeconds: 10)
    }
}

struct EndToEndFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
