import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox

/// Maintenance mode end to end: the built `upkeep` against a sandbox cluster, with the real
/// `kubectl` as the witness of every Flux object's `spec.suspend` and of the ConfigMap
/// `kube-system/upkeep-maintenance`. The sandbox's Flux objects: the Kustomizations
/// `flux-system/flux-system` and `flux-system/apps`, the HelmReleases `longhorn-system/longhorn`
/// and `default/podinfo`; podinfo is suspended by hand first and must stay so.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct MaintenanceEndToEndTests {
    static let ours = ["Kustomization/flux-system/apps", "Kustomization/flux-system/flux-system", "HelmRelease/longhorn-system/longhorn"]
    static let operators = "HelmRelease/default/podinfo"

    /// `kubectl ARGUMENTS -o json` against the sandbox, parsed.
    static func kubectl(_ sandbox: EndToEndSandbox, _ arguments: [String]) async throws -> (status: Int32, json: [String: Any]?, output: String) {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig"] + arguments, timeoutSeconds: 30)
        let json = try? JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any]
        return (outcome.status, json, outcome.output)
    }

    /// Every Kustomization's and HelmRelease's `spec.suspend`, by `Kind/namespace/name`, as kubectl reads them.
    static func suspension(_ sandbox: EndToEndSandbox) async throws -> [String: Bool] {
        let listed = try await kubectl(sandbox, ["get", "kustomizations.kustomize.toolkit.fluxcd.io,helmreleases.helm.toolkit.fluxcd.io", "-A", "-o", "json"])
        try #require(listed.status == 0, "kubectl get failed: \(listed.output)")
        var seen: [String: Bool] = [:]
        for item in listed.json?["items"] as? [[String: Any]] ?? [] {
            let metadata = item["metadata"] as? [String: Any]
            let key = "\(item["kind"] as? String ?? "?")/\(metadata?["namespace"] as? String ?? "?")/\(metadata?["name"] as? String ?? "?")"
            seen[key] = (item["spec"] as? [String: Any])?["suspend"] as? Bool ?? false
        }
        return seen
    }

    /// The ConfigMap's data as kubectl reads it; nil when there is none.
    static func record(_ sandbox: EndToEndSandbox) async throws -> [String: String]? {
        let got = try await kubectl(sandbox, ["-n", "kube-system", "get", "configmap", "upkeep-maintenance", "-o", "json"])
        if got.status != 0 {
            #expect(got.output.contains("NotFound"), "kubectl get configmap failed otherwise: \(got.output)")
            return nil
        }
        return got.json?["data"] as? [String: String]
    }

    static func expect(_ sandbox: EndToEndSandbox, suspended ours: Bool, _ context: String) async throws {
        var expected = Dictionary(uniqueKeysWithValues: Self.ours.map { ($0, ours) })
        expected[Self.operators] = true
        #expect(try await suspension(sandbox) == expected, "\(context)")
    }

    static func suspendByHand(_ sandbox: EndToEndSandbox) async throws {
        let patched = try await kubectl(sandbox, ["-n", "default", "patch", "helmreleases.helm.toolkit.fluxcd.io", "podinfo", "--type", "merge",
                                                  "-p", #"{"spec":{"suspend":true}}"#])
        try #require(patched.status == 0, "\(patched.output)")
    }

    @Test func enableAndDisableWithKubectlAsWitness() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            try await Self.suspendByHand(sandbox)
            let off = try await sandbox.controller(["maintenance", "status"])
            #expect(off.status == 0 && off.output.contains("maintenance mode: off"), "\(off.output)")

            let enable = try await sandbox.controller(["maintenance", "enable", "--reason", "kernel updates", "--notify"])
            #expect(enable.status == 0 && enable.output.contains("3 Flux objects suspended, 1 suspended before and left so"), "\(enable.output)")
            #expect(enable.output.contains("--notify: no notification sink is configured"), "\(enable.output)")
            try await Self.expect(sandbox, suspended: true, "after enable")
            let data = try #require(try await Self.record(sandbox), "no ConfigMap after enable")
            #expect(data["state"] == "enabled" && data["reason"] == "kernel updates" && data["by"]?.contains("@") == true, "\(data)")
            // Kustomizations first (nothing is applied any more), then HelmReleases: the order they are suspended in.
            #expect(data["suspended"] == Self.ours.map { $0 + "\n" }.joined() && data["alreadySuspended"] == Self.operators + "\n", "\(data)")

            let status = try await sandbox.controller(["maintenance", "status", "--json"])
            let report = try #require(try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any], "\(status.output)")
            #expect(report["on"] as? Bool == true && report["reason"] as? String == "kernel updates" && report["state"] as? String == "enabled")
            #expect(Set(report["suspended"] as? [String] ?? []) == Set(Self.ours) && report["alreadySuspended"] as? [String] == [Self.operators])
            let text = try await sandbox.controller(["status"])
            #expect(text.output.contains("maintenance mode: on, m") && text.output.contains("kernel updates; 3 Flux objects suspended"), "\(text.output)")

            // With the API unreachable, `maintenance status` still shows what this controller recorded, and says so.
            let kubeconfig = try String(contentsOfFile: "\(sandbox.directory)/kubeconfig", encoding: .utf8)
            let dead = kubeconfig.split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.contains("server:") ? "    server: https://127.0.0.1:1" : String($0) }.joined(separator: "\n")
            try dead.write(toFile: "\(sandbox.directory)/dead-kubeconfig", atomically: true, encoding: .utf8)
            let config = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            let deadConfig = "\(sandbox.directory)/upkeep-dead-api.yaml"
            try config.replacingOccurrences(of: "\(sandbox.directory)/kubeconfig", with: "\(sandbox.directory)/dead-kubeconfig")
                .write(toFile: deadConfig, atomically: true, encoding: .utf8)
            let offline = try await ProcessRun.run(sandbox.upkeep, ["--config", deadConfig, "maintenance", "status"], timeoutSeconds: 60)
            #expect(offline.status == 0 && offline.output.contains("maintenance mode: on, m") && offline.output.contains("kernel updates")
                    && offline.output.contains("this controller's state database only"), "\(offline.output)")

            // Flux would not apply a commit now: `update` refuses before cloning.
            let update = try await sandbox.controller(["update", "--component", "longhorn", "--to", "v1.8.2", "--yes"])
            #expect(update.status == 5 && update.output.contains("maintenance mode is on"), "\(update.output)")

            let disable = try await sandbox.controller(["maintenance", "disable"])
            #expect(disable.status == 0 && disable.output.contains("3 Flux objects resumed")
                    && disable.output.contains("still suspended as before: \(Self.operators)"), "\(disable.output)")
            try await Self.expect(sandbox, suspended: false, "after disable")
            #expect(try await Self.record(sandbox) == nil, "the ConfigMap stays after disable")
            let again = try await sandbox.controller(["maintenance", "disable"])
            #expect(again.status == 0 && again.output.contains("maintenance mode is off"), "\(again.output)")
        }
    }

    /// Two controllers: another one holds the Lease `kube-system/upkeep` (written with kubectl,
    /// live). `maintenance enable` and `disable` of this one are refused naming the holder (exit
    /// 6) and change nothing kubectl shows; `status` reads without the lock and leaves the Lease
    /// as it was. Once the Lease lapses, enable takes it over; `disable --force-takeover` takes a
    /// live one and resumes what enable suspended.
    @Test func whileAnotherControllerHoldsTheLeaseEnableAndDisableChangeNothing() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            try await Self.suspendByHand(sandbox)
            let other = "ctl-other-0badc0de (apply r20261207-101500)"
            try await sandbox.writeClusterLease(holder: other, durationSeconds: 300)
            let held = try #require(try await sandbox.clusterLease())

            let enable = try await sandbox.controller(["maintenance", "enable", "--reason", "two at once"])
            #expect(enable.status == 6 && enable.output.contains("the Lease kube-system/upkeep is held by \(other)")
                    && enable.output.contains("nothing was changed"), "\(enable.output)")
            try await Self.expect(sandbox, suspended: false, "after the refused enable")
            #expect(try await Self.record(sandbox) == nil, "the refused enable wrote the ConfigMap")
            let status = try await sandbox.controller(["maintenance", "status"])
            #expect(status.status == 0 && status.output.contains("maintenance mode: off"), "\(status.output)")
            #expect(NSDictionary(dictionary: try #require(try await sandbox.clusterLease())) == NSDictionary(dictionary: held),
                    "enable or status changed the Lease")

            // Lapsed: taken over.
            try await sandbox.writeClusterLease(holder: other, renewedSecondsAgo: 600, durationSeconds: 60)
            let taken = try await sandbox.controller(["maintenance", "enable", "--reason", "after the other"])
            #expect(taken.status == 0 && taken.output.contains("took the cluster Lease over from \(other)")
                    && taken.output.contains("3 Flux objects suspended"), "\(taken.output)")
            try await Self.expect(sandbox, suspended: true, "after the enable")
            let given = try #require(try await sandbox.clusterLease())
            #expect((given["holderIdentity"] as? String ?? "").isEmpty, "enable did not give the Lease back: \(given)")

            try await sandbox.writeClusterLease(holder: other, durationSeconds: 300)
            let disable = try await sandbox.controller(["maintenance", "disable"])
            #expect(disable.status == 6 && disable.output.contains("the Lease kube-system/upkeep is held by \(other)"), "\(disable.output)")
            try await Self.expect(sandbox, suspended: true, "after the refused disable")
            #expect(try await Self.record(sandbox)?["state"] == "enabled", "the refused disable touched the ConfigMap")

            // The operator knows the other is gone: a live Lease is taken by force.
            let forced = try await sandbox.controller(["maintenance", "disable", "--force-takeover"])
            #expect(forced.status == 0 && forced.output.contains("took the cluster Lease over from \(other)")
                    && forced.output.contains("3 Flux objects resumed"), "\(forced.output)")
            try await Self.expect(sandbox, suspended: false, "after the disable")
            #expect(try await Self.record(sandbox) == nil)
        }
    }

    /// `maintenance.suspendFlux` and another controller's live Lease: an `apply` that carries an
    /// unfinished rollout on (it does not look at the Lease before, as a new one does) is refused
    /// when the rollout takes its lock (exit 6), and maintenance mode was never switched on: it is
    /// switched under that lock. The witness is the sandbox's datastore, kine's SQLite table, where
    /// every write is a row: no write of the ConfigMap nor a suspended Flux object before the
    /// `maintenance enable` run afterwards, whose rows show the witness sees such writes.
    @Test func aRolloutRefusedTheLockNeverSwitchesMaintenanceOn() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            // An unfinished rollout, without maintenance mode: agent-1's new k3s never turns healthy.
            try await sandbox.fault(["agent-1", "unhealthy"])
            let blocked = try await sandbox.controller(["apply", "--to", EndToEndTests.nextMinor, "--yes", "--skip-backup"], timeoutSeconds: 240)
            try #require(blocked.status == 3, "apply should block:\n\(blocked.output)")
            try await sandbox.fault(["agent-1", "clear"])

            let other = "ctl-other-0badc0de (apply r20261207-101500)"
            try await sandbox.writeClusterLease(holder: other, durationSeconds: 300)
            let held = try #require(try await sandbox.clusterLease())
            let config = "\(sandbox.directory)/upkeep-maintenance.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nmaintenance:\n  suspendFlux: true\n").write(toFile: config, atomically: true, encoding: .utf8)
            let apply = try await sandbox.controller(["apply", "--to", EndToEndTests.nextMinor, "--yes", "--skip-backup"], config: config, timeoutSeconds: 240)
            #expect(apply.status == 6 && apply.output.contains("carrying it on") && apply.output.contains("held by \(other)"), "\(apply.output)")
            #expect(!apply.output.contains("maintenance mode"), "\(apply.output)")
            #expect(NSDictionary(dictionary: try #require(try await sandbox.clusterLease())) == NSDictionary(dictionary: held), "apply changed the Lease")
            let after = try await Self.suspension(sandbox)
            #expect(after.count == 4 && after.values.allSatisfy { !$0 }, "after the refused apply: \(after)")
            #expect(try await Self.record(sandbox) == nil, "the refused apply left the ConfigMap")

            let enable = try await sandbox.controller(["maintenance", "enable", "--reason", "witness", "--force-takeover"])
            #expect(enable.status == 0 && enable.output.contains("4 Flux objects suspended"), "\(enable.output)")
            let server = try #require(sandbox.manifest.nodes.first { $0.name == "server-1" })
            let writes = try await Self.maintenanceWrites("\(server.dataDir)/server/db/state.db")
            let first = try #require(writes.first { $0.name == Self.recordKey }, "the witness does not see the ConfigMap: \(writes)")
            #expect(first.value.contains("witness") && !first.value.contains("\"rollout\""),
                    "the ConfigMap was written before the enable, by the refused apply: \(first)")
            let suspended = writes.filter { $0.name != Self.recordKey && $0.value.contains(#""suspend":true"#) }
            #expect(suspended.count == 4 && suspended.allSatisfy { $0.id > first.id },
                    "Flux objects suspended before the enable, by the refused apply: \(suspended.map { "\($0.id) \($0.name)" })")
        }
    }

    static let recordKey = "/registry/configmaps/kube-system/upkeep-maintenance"

    /// Every write kine's table in `database` holds of the ConfigMap or of a Kustomization or
    /// HelmRelease, oldest first, as the real sqlite3 reads them.
    static func maintenanceWrites(_ database: String) async throws -> [(id: Int, name: String, value: String)] {
        let query = """
            SELECT id, name, hex(value) FROM kine WHERE name = '\(recordKey)'
              OR name LIKE '/registry/kustomize.toolkit.fluxcd.io/kustomizations/%' OR name LIKE '/registry/helm.toolkit.fluxcd.io/helmreleases/%'
              ORDER BY id
            """
        let read = try await ProcessRun.run("sqlite3", ["-separator", " ", database, query], timeoutSeconds: 30)
        try #require(read.status == 0, "sqlite3 failed: \(read.output)")
        return read.output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard fields.count >= 2, let id = Int(fields[0]) else { return nil }
            let hex = fields.count == 3 ? Array(fields[2].utf8) : []
            let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap { UInt8(String(decoding: hex[$0...$0 + 1], as: UTF8.self), radix: 16) }
            return (id, fields[1], String(decoding: bytes, as: UTF8.self))
        }
    }

    /// `upkeep` killed with SIGKILL after it recorded what it suspends and suspended the
    /// Kustomizations, while its write to the HelmRelease hangs in the API (a sandbox fault):
    /// `disable` resumes exactly what the record names, and the object suspended by hand stays.
    @Test func killedBetweenTheRecordAndThePatchesDisableResumesExactlyTheRecordedSet() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            try await Self.suspendByHand(sandbox)
            // HelmReleases are patched after the Kustomizations; their writes now hang, then fail unapplied.
            try await sandbox.fault(["api", "stall-writes", "15", "--resource", "helmreleases"])
            let enable = try sandbox.start(["maintenance", "enable", "--reason", "cut off"])
            // Both Kustomizations suspended (after the record): the enable now waits on the HelmRelease.
            _ = try await enable.waitForLine("the second Kustomization suspended", timeoutSeconds: 60) { $0 == "suspended Kustomization/flux-system/flux-system" }
            let recorded = try #require(try await Self.record(sandbox), "no record before the patches")
            #expect(recorded["state"] == "enabling", "\(recorded)")
            await enable.killHard()
            try await sandbox.fault(["api", "clear"])
            let cut = try await Self.suspension(sandbox)
            #expect(cut["Kustomization/flux-system/apps"] == true && cut["Kustomization/flux-system/flux-system"] == true
                    && cut["HelmRelease/longhorn-system/longhorn"] == false, "the crash left: \(cut)")

            let status = try await sandbox.controller(["maintenance", "status"])
            #expect(status.output.contains("its enable was interrupted"), "\(status.output)")
            let disable = try await sandbox.controller(["maintenance", "disable"])
            #expect(disable.status == 0 && disable.output.contains("3 Flux objects resumed"), "\(disable.output)")
            try await Self.expect(sandbox, suspended: false, "after disable")
            #expect(try await Self.record(sandbox) == nil)
        }
    }

    /// `maintenance.suspendFlux: true`: Flux is suspended before the first node and while the
    /// rollout is blocked (status says so), and resumed when it finishes.
    @Test func aRolloutWithSuspendFluxSuspendsFluxUntilItFinishes() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            try await Self.suspendByHand(sandbox)
            let config = "\(sandbox.directory)/upkeep-maintenance.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nmaintenance:\n  suspendFlux: true\n").write(toFile: config, atomically: true, encoding: .utf8)
            // agent-1's new k3s never turns healthy: after server-1 ran the new minor the rollout blocks.
            try await sandbox.fault(["agent-1", "unhealthy"])
            let apply = try sandbox.start(["apply", "--to", EndToEndTests.nextMinor, "--yes", "--skip-backup"], config: config)
            _ = try await apply.waitForPhase("server-1", "draining")
            try await Self.expect(sandbox, suspended: true, "while server-1 drains")
            let during = try #require(try await Self.record(sandbox), "no ConfigMap during the rollout")
            #expect(during["state"] == "enabled" && during["rollout"]?.hasPrefix("r") == true, "\(during)")
            #expect(await apply.exitCode(timeoutSeconds: 240) == 3, "apply should block:\n\(apply.output)")
            #expect(apply.output.contains("stays on while the rollout is blocked"), "\(apply.output)")
            try await Self.expect(sandbox, suspended: true, "while the rollout is blocked")
            let status = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "status"], timeoutSeconds: 30)
            #expect(status.output.contains("it stays on while this rollout is blocked"), "\(status.output)")

            try await sandbox.fault(["agent-1", "clear"])
            let resume = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "resume"], timeoutSeconds: 240)
            #expect(resume.status == 0 && resume.output.contains("stays on for rollout") && resume.output.contains("off: Flux resumed (3 objects)"),
                    "\(resume.output)")
            try await Self.expect(sandbox, suspended: false, "after the rollout finished")
            #expect(try await Self.record(sandbox) == nil)
            try await sandbox.expectAllNodes(at: EndToEndTests.nextMinor, "after the resume")
        }
    }
}
