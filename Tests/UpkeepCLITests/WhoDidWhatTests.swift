import Foundation
import Testing
import UpkeepRollout
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore
@testable import UpkeepCLI

/// Who did what (`history`, `report`): a rollout recorded as bob's apply through sudo on another
/// host, then abandoned by the built binary run here under `SUDO_USER=alice`, which records this
/// process's own user and host.
@Suite struct WhoDidWhatTests {
    static let bob = Initiator(user: "root", sudoUser: "bob", host: "ctl-old")

    @Test func historyAndReportSayWhoStartedEachOperation() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        try RolloutFixtures.record(try RolloutFixtures.engine("r1"), world: RolloutFixtures.world(), in: store, holder: "dead controller",
                                   start: start, stamp: OperationStamp(.apply, by: Self.bob)) { !$0.cordonedByUpkeep.isEmpty }
        // No kubeconfig: abandon says it did not look at the cluster Lease, and goes on.
        let config = try directory.write("stateDir: state\nkubeconfig: no-such-kubeconfig\n", to: "upkeep.yaml")
        let upkeep = try UpkeepBinary.path()
        let abandoned = try runProcess("/usr/bin/env", ["SUDO_USER=alice", upkeep, "abandon", "--config", config, "--yes"])
        #expect(abandoned.status == 0, "\(abandoned.output)\(abandoned.error)")
        #expect(abandoned.output.contains("note: the cluster Lease kube-system/upkeep was not looked at"), "\(abandoned.output)")
        let alice = Initiator.current(environment: ["SUDO_USER": "alice"])
        #expect(alice.sudoUser == "alice" && alice.host == RuntimeConfiguration.hostName())
        // Maintenance mode's records name the same person, shorter.
        #expect(OperatorIdentity.name(Self.bob) == "bob@ctl-old (sudo)")
        #expect(OperatorIdentity.name(Initiator(user: "carol", sudoUser: "carol", host: "h")) == "carol@h")
        #expect(OperatorIdentity.name(.serve(user: "upkeep", host: "ctl", policy: "automation.k3s: minor")) == "serve@ctl")

        let table = try UpkeepBinary.run(["history", "--config", config])
        let header = try #require(table.output.split(separator: "\n").first)
        #expect(header.contains(" BY "), "\(table.output)")
        #expect(table.output.contains("apply by root (sudo by bob)@ctl-old"), "\(table.output)")
        let detail = try UpkeepBinary.run(["history", "r1", "--config", config])
        #expect(detail.output.contains(" apply by root (sudo by bob)@ctl-old\n") && detail.output.contains(" abandon by \(alice)\n"), "\(detail.output)")
        let json = try UpkeepBinary.run(["history", "--config", config, "-o", "json"])
        let records = try JSONDecoder().decode([RolloutRecord].self, from: Data(json.output.utf8))
        #expect(records.first?.startedBy == OperationEntry(kind: .apply, at: start, by: Self.bob), "\(json.output)")

        let report = try UpkeepBinary.run(["report", "r1", "--config", config])
        #expect(report.output.contains("| Started by | root (sudo by bob)@ctl-old (`upkeep apply`) |"), "\(report.output)")
        #expect(report.output.contains("| Then | abandon by \(alice), "), "\(report.output)")
        let reportJSON = try UpkeepBinary.run(["report", "r1", "--config", config, "-o", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(reportJSON.output.utf8)) as? [String: Any]
        let operations = (object?["rollout"] as? [String: Any])?["operations"] as? [[String: Any]]
        #expect(operations?.map { $0["kind"] as? String } == ["apply", "abandon"], "\(reportJSON.output.prefix(400))")
    }

    @Test func clusterLeaseEventsAreExportedAsMetrics() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        try store.countLeaseEvent("conflict", now: Instant(milliseconds: 1))
        try store.countLeaseEvent("lost", now: Instant(milliseconds: 2))
        try store.countLeaseEvent("lost", now: Instant(milliseconds: 3))
        let config = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        let metrics = try UpkeepBinary.run(["metrics", "--config", config])
        for line in [#"upkeep_cluster_lease_events_total{event="conflict"} 1"#, #"upkeep_cluster_lease_events_total{event="lost"} 2"#,
                     #"upkeep_cluster_lease_events_total{event="took_over"} 0"#] {
            #expect(metrics.output.contains(line), "\(metrics.output)")
        }
    }
}
