import Foundation
import Logging
import Synchronization
import Testing
import UpkeepAgentCore
import UpkeepHTTP
import UpkeepTestSupport
@testable import UpkeepAgent

/// The agent's bounds reached are visible: a rate-limited log line and a counter in the
/// Prometheus text file node_exporter reads (docs/agent.md, "Bounds").
@Suite struct AgentLimitsTests {
    /// A `k3s server --cluster-reset` that never finishes (a real process that sleeps) is stopped
    /// at the bound; twice within a minute: two counts, one log line.
    @Test func aClusterResetPastItsBoundIsCountedInTheTextfileAndLoggedOnceAMinute() async throws {
        let directory = try TemporaryDirectory()
        let k3s = try directory.write("#!/bin/sh\nexec sleep 60\n", to: "k3s")
        chmod(k3s, 0o755)
        let restoreDir = directory.file("restore")
        try FileManager.default.createDirectory(atPath: restoreDir, withIntermediateDirectories: true)
        let backup = String(repeating: "d", count: 64)
        _ = try directory.write("snapshot", to: "restore/\(backup).etcdSnapshot")
        let log = RecordedLog()
        let textfile = directory.file("metrics/upkeep-agent.prom")
        let limits = AgentLimits(textfile: textfile, logger: log.logger)
        limits.write()
        #expect(try String(contentsOfFile: textfile, encoding: .utf8).contains("upkeep_agent_limit_reached_total{limit=\"cluster_reset_timeout\"} 0\n"))

        let restore = DatastoreRestore(k3sBinary: k3s, k3sDataDir: directory.file("k3s"), restoreDir: restoreDir, timeoutSeconds: 1, limits: limits)
        for attempt in 1...2 {
            let started = ContinuousClock.now
            do {
                try await restore.restore(sha256: backup, format: .etcdSnapshot)
                Issue.record("attempt \(attempt): a reset that never finishes succeeded")
            } catch {
                #expect(error.message.contains("did not finish within 1.0 s"), "\(error)")
            }
            #expect(ContinuousClock.now - started < .seconds(10), "the bound held")
        }
        #expect(limits.count(.clusterReset) == 2)
        #expect(ProcessRunner.limits.count(.timeout) >= 2, "every child stopped at its bound counts")
        let text = try String(contentsOfFile: textfile, encoding: .utf8)
        #expect(text.contains("# TYPE upkeep_agent_limit_reached_total counter\n")
                && text.contains("upkeep_agent_limit_reached_total{limit=\"cluster_reset_timeout\"} 2\n")
                && text.contains("upkeep_agent_limit_reached_total{limit=\"child_timeout\"} "), "\(text)")
        #expect(try mode(textfile) == 0o644, "node_exporter reads it as another user")
        #expect(text.contains("# TYPE upkeep_agent_http_client_limit_reached_total counter\n")
                && text.contains("upkeep_agent_http_client_limit_reached_total{limit=\"connect_timeout\"} "), "\(text)")
        let lines = log.lines.filter { $0.metadata["limit"] == "cluster_reset_timeout" }
        #expect(lines.count == 1 && lines.first?.level == .warning
                && lines.first?.message.hasPrefix("k3s server --cluster-reset ran 1 s, its bound, and was stopped") == true,
                "\(log.lines.map(\.message))")
    }

    /// The announcement child as real processes: one that gives up (exit 1, as `announce` does
    /// after its tries) and one stopped at its time bound are counted; one that succeeds, and one
    /// cancelled with the daemon, are not. What the child printed reaches the relay.
    @Test func anAnnouncementThatDidNotAnnotateTheNodeIsCounted() async throws {
        let directory = try TemporaryDirectory()
        let gaveUp = try directory.write("#!/bin/sh\necho 'could not annotate node n1' >&2\nexit 1\n", to: "gave-up")
        let slow = try directory.write("#!/bin/sh\nexec sleep 60\n", to: "slow")
        let fine = try directory.write("#!/bin/sh\necho announced\n", to: "fine")
        for script in [gaveUp, slow, fine] { chmod(script, 0o755) }
        let log = RecordedLog()
        let textfile = directory.file("upkeep-agent.prom")
        let limits = AgentLimits(textfile: textfile, logger: log.logger)
        let relayed = Mutex<String>("")
        let relay: (String) -> Void = { text in relayed.withLock { $0 += text } }

        await AnnouncementChild.run(executable: fine, arguments: [], limits: limits, relay: relay)
        #expect(limits.count(.announcement) == 0 && relayed.withLock { $0 }.contains("announced"))
        await AnnouncementChild.run(executable: gaveUp, arguments: [], limits: limits, relay: relay)
        #expect(limits.count(.announcement) == 1 && relayed.withLock { $0 }.contains("could not annotate node n1"))
        let started = ContinuousClock.now
        await AnnouncementChild.run(executable: slow, arguments: [], boundSeconds: 1, limits: limits, relay: relay)
        #expect(ContinuousClock.now - started < .seconds(10), "the bound held")
        #expect(limits.count(.announcement) == 2)
        let cancelled = Task { await AnnouncementChild.run(executable: slow, arguments: [], limits: limits, relay: relay) }
        try await Task.sleep(for: .milliseconds(300))
        cancelled.cancel()
        await cancelled.value
        #expect(limits.count(.announcement) == 2, "a child stopped with the daemon is not a bound reached")

        let text = try String(contentsOfFile: textfile, encoding: .utf8)
        #expect(text.contains("upkeep_agent_limit_reached_total{limit=\"announcement_attempts\"} 2\n"), "\(text)")
        let lines = log.lines.filter { $0.metadata["limit"] == "announcement_attempts" }
        #expect(lines.count == 1 && lines.first?.message.hasPrefix("upkeep-agent announce gave up (exit 1)") == true,
                "rate-limited to one line a minute: \(log.lines.map(\.message))")
    }

    @Test func theTextfileIsConfigurableAndDefaultsBesideTheDataDirectory() throws {
        let defaulted = try ConfigLoader.parse("nodeName: n1\ndataDir: /srv/agent\n")
        #expect(defaulted.resolvedMetricsTextfile == "/srv/agent/metrics/upkeep-agent.prom")
        let configured = try ConfigLoader.parse("nodeName: n1\nmetrics: {textfile: /var/lib/prometheus/node-exporter/upkeep-agent.prom}\n")
        #expect(configured.resolvedMetricsTextfile == "/var/lib/prometheus/node-exporter/upkeep-agent.prom")
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: n1\nmetrics: {port: 9100}\n") }
    }
}
