import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox
import UpkeepStore

/// A Longhorn update done safely, against a sandbox whose Flux follows a real Git repository,
/// with `kubectl` as the witness: a degraded attached volume or a snapshot that never becomes
/// ready refuses the update with nothing committed; a done one leaves one snapshot per attached
/// volume labelled with its id, and the snapshots of older updates go; a failure after Longhorn's
/// manager moved is not reverted (Longhorn supports no downgrade).
@Suite(.serialized, .timeLimit(.minutes(6)))
struct LonghornSafetyEndToEndTests {
    let gitOps = GitOpsEndToEndTests()

    /// `name volume readyToUse` of every snapshot `selector` picks, sorted.
    func snapshots(_ sandbox: EndToEndSandbox, _ selector: String) async throws -> [String] {
        let text = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "snapshots.longhorn.io", "-l", selector, "-o",
                                                      #"jsonpath={range .items[*]}{.metadata.name} {.spec.volume} {.status.readyToUse}{"\n"}{end}"#])
        return text.split(separator: "\n").map(String.init).sorted()
    }

    /// `name state robustness` of every volume, sorted.
    func volumes(_ sandbox: EndToEndSandbox) async throws -> [String] {
        let text = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "volumes.longhorn.io", "-o",
                                                      #"jsonpath={range .items[*]}{.metadata.name} {.status.state} {.status.robustness}{"\n"}{end}"#])
        return text.split(separator: "\n").map(String.init).sorted()
    }

    /// `name currentImage robustness` of each of `names`.
    func engines(_ sandbox: EndToEndSandbox, _ names: [String]) async throws -> [String] {
        var lines: [String] = []
        for name in names {
            lines.append(name + " " + (try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "volumes.longhorn.io", name, "-o",
                                                                          "jsonpath={.status.currentImage} {.status.robustness}"])))
        }
        return lines
    }

    func waitForVolumes(_ sandbox: EndToEndSandbox, _ what: String, _ condition: ([String]) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(60)
        var seen: [String] = []
        while Date() < deadline {
            seen = try await volumes(sandbox)
            if condition(seen) { return }
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        Issue.record("volumes not \(what) within 60 s: \(seen)")
    }

    func records(_ sandbox: EndToEndSandbox, config: String? = nil) async throws -> [ComponentUpdateRecord] {
        let listed = try await sandbox.controller(["history", "--updates", "-o", "json"], config: config)
        return try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
    }

    @Test func refusalsCommitNothingAndADoneUpdateKeepsOneSnapshotPerAttachedVolume() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let seeded = try await gitOps.log(sandbox)
            let attached = try await volumes(sandbox).filter { $0.contains(" attached healthy") }.map { String($0.split(separator: " ")[0]) }
            try #require(attached.count == 2, "the sandbox has two attached volumes")

            // A replica of the first volume fails and rebuilds slowly: the volume is degraded.
            let agent = try #require(sandbox.manifest.nodes.last?.name)
            let replicas = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "replicas.longhorn.io", "-o",
                                                              #"jsonpath={range .items[*]}{.metadata.name} {.spec.volumeName} {.spec.nodeID}{"\n"}{end}"#])
            let replica = try #require(replicas.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
                .first { $0.count == 3 && $0[1] == attached[0] && $0[2] == agent }?[0], "\(replicas)")
            try await sandbox.fault([agent, "slow-rebuild", "3600"])
            try await Task.sleep(nanoseconds: 600_000_000)  // the sandbox reads its faults every quarter second
            _ = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "patch", "replicas.longhorn.io", replica, "--type", "merge",
                                                   "-p", #"{"spec":{"failedAt":"2026-12-07T10:00:00Z"}}"#])
            try await waitForVolumes(sandbox, "degraded") { $0.contains("\(attached[0]) attached degraded") }
            let degraded = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes"])
            #expect(degraded.status == 5 && degraded.output.contains("\(attached[0]) (attached, degraded")
                    && degraded.output.contains("nothing was committed"), "\(degraded.output)")
            #expect(try await gitOps.log(sandbox) == seeded, "nothing committed")
            #expect(try await snapshots(sandbox, "upkeep.io/update").isEmpty, "no snapshot taken")

            try await sandbox.fault([agent, "clear"])
            try await waitForVolumes(sandbox, "healthy again") { $0.contains("\(attached[0]) attached healthy") }

            // A snapshot that never becomes ready: refused after the bound, its snapshots removed, nothing committed.
            let quick = try sandbox.controllerConfig("quick", extra: "longhorn: {snapshots: {keep: 1, readyTimeoutSeconds: 5}}")
            try await sandbox.fault(["longhorn", "snapshots-stuck", attached[1]])
            let stuck = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes"], config: quick)
            #expect(stuck.status == 5 && stuck.output.contains("not ready within 5 s") && stuck.output.contains("of \(attached[1])")
                    && stuck.output.contains("nothing was committed"), "\(stuck.output)")
            #expect(try await gitOps.log(sandbox) == seeded, "nothing committed")
            #expect(try await snapshots(sandbox, "upkeep.io/update").isEmpty, "the refused update's snapshots were removed")
            try await sandbox.fault(["longhorn", "clear"])

            // Done: one ready snapshot per attached volume, labelled with the update's id and recorded.
            let first = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes"], config: quick, timeoutSeconds: 120)
            #expect(first.status == 0 && first.output.contains("done: Longhorn runs v1.8.2"), "\(first.output)")
            let firstRecord = try #require(try await records(sandbox, config: quick).first)
            #expect(firstRecord.outcome == .completed)
            #expect(try await snapshots(sandbox, "upkeep.io/update=\(firstRecord.id)")
                    == attached.map { "upkeep-\(firstRecord.id)-\($0) \($0) true" }.sorted())
            #expect(firstRecord.snapshots == attached.map { "upkeep-\(firstRecord.id)-\($0)" }.sorted())
            // The setting is 0 in the sandbox: Upkeep upgraded each attached volume's engine itself.
            #expect(first.output.contains("upgrading the engine of \(attached[0])") && first.output.contains("upgrading the engine of \(attached[1])"),
                    "\(first.output)")
            #expect(try await engines(sandbox, attached) == attached.map { "\($0) longhornio/longhorn-engine:v1.8.2 healthy" })

            // Longhorn upgrades engines itself when its limit is above 0: Upkeep waits and validates.
            _ = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "patch", "settings.longhorn.io",
                                                   "concurrent-automatic-engine-upgrade-per-node-limit", "--type", "merge", "-p", #"{"value":"1"}"#])

            // keep: 1: the next update's snapshots replace the first's.
            try await Task.sleep(nanoseconds: 1_100_000_000)  // a later second: update ids name the second they start
            let second = try await sandbox.controller(["update", "--to", "v1.9.1", "--yes"], config: quick, timeoutSeconds: 120)
            #expect(second.status == 0 && second.output.contains("removing 2 Longhorn snapshot(s) of earlier updates"), "\(second.output)")
            #expect(second.output.contains("Longhorn upgrades attached volumes to longhornio/longhorn-engine:v1.9.1 itself")
                    && !second.output.contains("upgrading the engine of"), "\(second.output)")
            #expect(try await engines(sandbox, attached) == attached.map { "\($0) longhornio/longhorn-engine:v1.9.1 healthy" })
            let secondRecord = try #require(try await records(sandbox, config: quick).first)
            #expect(secondRecord.id != firstRecord.id && secondRecord.snapshots.count == 2)
            #expect(try await snapshots(sandbox, "upkeep.io/update").map { String($0.split(separator: " ")[0]) } == secondRecord.snapshots,
                    "only the newest update's snapshots are left")
        }
    }

    @Test func aFailureAfterTheManagerMovedKeepsTheCommitAndNamesTheSnapshotsAndTheBackup() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let backup = try await sandbox.controller(["backup", "now"], timeoutSeconds: 120)
            try #require(backup.status == 0, "\(backup.output)")
            try await sandbox.fault(["longhorn", "fails-after-manager"])
            let failed = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes", "--timeout", "20"], timeoutSeconds: 120)
            #expect(failed.status == 4 && failed.output.contains("UpgradeFailed") && failed.output.contains("not reverted")
                    && failed.output.contains("Longhorn's manager reports v1.8.2"), "\(failed.output)")
            #expect(try await gitOps.log(sandbox).first == "upkeep longhorn: upgrade to v1.8.2 (chart 1.7.2 → 1.8.2)", "no revert on the branch")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.2")
            let pinned = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "helmreleases.helm.toolkit.fluxcd.io", "longhorn",
                                                            "-o", "jsonpath={.spec.chart.spec.version}"])
            #expect(pinned == "1.8.2", "the chart stays where Longhorn is")
            let record = try #require(try await records(sandbox).first)
            #expect(record.outcome == .failedForward && record.revertCommit == nil && record.snapshots.count == 2)
            for name in record.snapshots { #expect(failed.output.contains(name), "the output names \(name)") }
            #expect(record.message.contains("the newest datastore backup: ") && !record.message.contains("none recorded"), "\(record.message)")
            // versions/longhorn: an update that failed forward meant no version.
            let validated = try await sandbox.controller(["validate", "--post-update"], timeoutSeconds: 120)
            #expect(validated.status == 1 && validated.output.contains("UNHEALTHY versions/longhorn: update \(record.id) of longhorn ended failedForward"),
                    "\(validated.output)")

            // Putting the old chart back by hand is what Longhorn blocks: the HelmRelease fails, Longhorn stays.
            let clone = "\(sandbox.directory)/hand-revert"
            for arguments in [["clone", "-q", "\(sandbox.directory)/git/fleet.git", clone], ["-C", clone, "revert", "--no-edit", "HEAD"],
                              ["-C", clone, "push", "-q", "origin", "HEAD:main"]] {
                let git = try await ProcessRun.run("git", arguments, environment: Git.environment(identity: "operator"), timeoutSeconds: 60)
                try #require(git.status == 0, "git \(arguments.joined(separator: " ")): \(git.output)")
            }
            let deadline = Date().addingTimeInterval(30)
            var message = ""
            while Date() < deadline, !message.contains("downgrade is not supported") {
                message = try await gitOps.kubectl(sandbox, ["-n", "longhorn-system", "get", "helmreleases.helm.toolkit.fluxcd.io", "longhorn", "-o",
                                                             #"jsonpath={.status.conditions[?(@.type=="Ready")].message}"#])
                try await Task.sleep(nanoseconds: 250_000_000)
            }
            #expect(message.contains("downgrade is not supported"), "\(message)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.2")
        }
    }
}
