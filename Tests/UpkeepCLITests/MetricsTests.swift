import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepRollout
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore
import UpkeepRuntimeTestSupport

/// The repository's `deploy/` directory, found from this source file.
private let deployDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("deploy").path

/// Metrics over a real state database, as the built `upkeep` prints and serves them, judged by
/// Prometheus's own `promtool`; the alert rules and the Grafana dashboard that use them.
@Suite(.serialized) struct MetricsTests {
    static func promtool() throws -> String {
        let path = "/usr/bin/promtool"
        try #require(FileManager.default.isExecutableFile(atPath: path), "promtool is missing: run scripts/install-deps (Debian package prometheus)")
        return path
    }

    /// `upkeep metrics` over two recorded rollouts (one completed, one rolled back), a backup and a check.
    /// What `upkeep serve` adds with `automation:` (its loop's metrics, docs/serve.md).
    static var serveMetrics: Set<String> {
        metricNames(ServeBoard(policy: AutomationPolicy(k3s: .minor)).exposition())
    }

    static func exposition(_ directory: TemporaryDirectory) throws -> String {
        let config = try HistoryStatusCommandTests.recordedState(directory)
        let store = try StateStore(stateDirectory: directory.file("state"))
        try store.recordBackup(BackupRecord(id: "b1", rolloutID: nil, takenAt: Instant(milliseconds: 1_795_000_000_000), node: "server-1",
                                            format: "etcdSnapshot", agentFile: "b1-server-1-1795000000", path: directory.file("b1.upkb"),
                                            bytes: 123_456, sha256: String(repeating: "b", count: 64)))
        let check = #"{"checkedAt":"2026-11-28T12:00:00Z","outcome":"updates-available","exitCode":10,"releaseSource":"github","#
            + #""components":[{"component":"k3s","installed":"v1.30.6+k3s1","target":"v1.31.4+k3s1","updateAvailable":true,"path":[],"warnings":[]},"#
            + #"{"component":"longhorn","installed":"v1.7.2","updateAvailable":false,"path":[],"warnings":[]}]}"#
        _ = try directory.write(check + "\n", to: "state/check-history.jsonl")
        // A cluster CA for 30 days, the controller's certificate for 20 and node-1's for 10.
        let pki = directory.file("pki")
        for arguments in [["init", "--days", "30"], ["issue", "controller", "--days", "20"], ["issue", "agent", "node-1", "--days", "10"]] {
            let made = try UpkeepBinary.run(["pki"] + arguments + ["--dir", pki])
            try #require(made.status == 0, "\(made.error)")
        }
        _ = try directory.write("stateDir: state\npki: {ca: pki/ca.crt, certificate: pki/controllers/controller.crt, key: pki/controllers/controller.key}\n"
                                + "notifications:\n  - {type: ntfy, name: phone, url: \"http://127.0.0.1:9/upkeep\"}\n"
                                + "  - {type: ntfy, name: pager, url: \"http://127.0.0.1:9/pager\", events: [rollout.failed]}\n",
                                to: "upkeep.yaml")
        // Two notifications waiting for `phone`, one of them after a failed attempt; `pager` wants neither.
        let outbox = try StateStore(stateDirectory: directory.file("state"), notifications: NotificationRouting(cluster: "lab", routes: [
            .init(sink: "phone", events: nil), .init(sink: "pager", events: [.rolloutFailed]),
        ]))
        let now = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        try outbox.emit(.rolloutStarted, summary: "started", details: [:], now: now)
        try outbox.emit(.rolloutFinished, summary: "finished", details: [:], now: now)
        let claimed = try #require(try outbox.claimNotification(sink: "phone", holder: "t", now: now, claimMilliseconds: 1000))
        try outbox.recordDelivery(sequence: claimed.sequence, .retry(at: now.adding(seconds: 60), error: "HTTP 503"), now: now)
        // Updates through Git: Longhorn completed in 5 min, Flux reverted, Longhorn running for 90 min.
        func update(_ id: String, _ component: String, to: String, startedSecondsAgo: Int64, took: Int64?,
                    _ outcome: ComponentUpdateRecord.Outcome) throws {
            let started = now.adding(milliseconds: -startedSecondsAgo * 1000)
            try store.saveComponentUpdate(ComponentUpdateRecord(id: id, component: component, from: "v1", to: to, repository: "file:///fleet.git",
                                                                file: "\(component).yaml", startedAt: started,
                                                                finishedAt: took.map { started.adding(milliseconds: $0 * 1000) }, commit: "abc",
                                                                outcome: outcome))
        }
        try update("u1", "longhorn", to: "v1.8.2", startedSecondsAgo: 86_400, took: 300, .completed)
        try update("u2", "flux", to: "v2.5.1", startedSecondsAgo: 43_200, took: 1_900, .reverted)
        try update("u3", "longhorn", to: "v1.9.1", startedSecondsAgo: 5_400, took: nil, .running)
        let result = try UpkeepBinary.run(["metrics", "--config", config])
        try #require(result.status == 0, "\(result.output)\(result.error)")
        return result.output
    }

    /// The value of the sample `line` (name with labels), or nil.
    static func value(_ exposition: String, _ sample: String) -> Double? {
        exposition.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    @Test func theExpositionCountsWhatTheDatabaseHoldsAndPromtoolAcceptsIt() throws {
        let directory = try TemporaryDirectory()
        let text = try Self.exposition(directory)
        #expect(Self.value(text, #"upkeep_rollouts_total{outcome="completed"}"#) == 1, "\(text)")
        #expect(Self.value(text, #"upkeep_rollouts_total{outcome="rolled_back"}"#) == 1)
        #expect(Self.value(text, #"upkeep_rollouts_total{outcome="failed"}"#) == 0)
        #expect(Self.value(text, "upkeep_last_rollout_success") == 0, "the newest finished rollout rolled back")
        #expect(Self.value(text, "upkeep_rollout_running") == 0 && Self.value(text, "upkeep_rollout_blocked") == 0)
        #expect(Self.value(text, "upkeep_controller_active") == 0, "the lease was released")
        #expect((Self.value(text, #"upkeep_node_upgrades_total{result="done"}"#) ?? 0) >= 3)
        #expect(Self.value(text, #"upkeep_node_upgrades_total{result="reverted"}"#) == 1)
        #expect(Self.value(text, "upkeep_node_upgrade_duration_seconds_count") == Self.value(text, #"upkeep_node_upgrades_total{result="done"}"#))
        #expect(Self.value(text, "upkeep_backups") == 1 && Self.value(text, "upkeep_last_backup_bytes") == 123_456)
        #expect(Self.value(text, "upkeep_last_backup_timestamp_seconds") == 1_795_000_000)
        #expect(Self.value(text, #"upkeep_update_available{component="k3s"}"#) == 1)
        #expect(Self.value(text, #"upkeep_update_available{component="longhorn"}"#) == 0)
        #expect(Self.value(text, "upkeep_last_check_timestamp_seconds") == 1_795_867_200)
        #expect(Self.value(text, "upkeep_last_check_success") == 1)
        // Certificate expiries, to the day: the earliest is node-1's.
        func daysLeft(_ sample: String) -> Int? { Self.value(text, sample).map { Int((($0 - Date().timeIntervalSince1970) / 86_400).rounded()) } }
        #expect(daysLeft(#"upkeep_certificate_expiry_timestamp_seconds{identity="cluster CA"}"#) == 30, "\(text)")
        #expect(daysLeft(#"upkeep_certificate_expiry_timestamp_seconds{identity="upkeep://controller/controller"}"#) == 20)
        #expect(daysLeft(#"upkeep_certificate_expiry_timestamp_seconds{identity="upkeep://agent/node-1"}"#) == 10)
        #expect(daysLeft("upkeep_certificate_earliest_expiry_timestamp_seconds") == 10)
        // The notification outbox, per configured sink.
        #expect(Self.value(text, #"upkeep_notification_backlog{sink="phone"}"#) == 2, "\(text)")
        #expect(Self.value(text, #"upkeep_notification_backlog{sink="pager"}"#) == 0)
        #expect(Self.value(text, #"upkeep_notification_attempts_failed_total{sink="phone"}"#) == 1)
        #expect(Self.value(text, #"upkeep_notifications_sent_total{sink="phone"}"#) == 0)
        #expect(Self.value(text, #"upkeep_notifications_failed_total{sink="pager"}"#) == 0)
        #expect(Self.value(text, #"upkeep_notifications_dropped_total{sink="phone"}"#) == 0)

        // Longhorn and Flux updates through Git, from their records.
        #expect(Self.value(text, #"upkeep_updates_total{component="longhorn",outcome="completed"}"#) == 1, "\(text)")
        #expect(Self.value(text, #"upkeep_updates_total{component="flux",outcome="reverted"}"#) == 1)
        #expect(Self.value(text, #"upkeep_updates_total{component="flux",outcome="completed"}"#) == 0)
        #expect(Self.value(text, #"upkeep_updates_total{component="longhorn",outcome="failed"}"#) == 0)
        #expect(Self.value(text, #"upkeep_updates_total{component="longhorn",outcome="failedForward"}"#) == 0, "listed from 0")
        #expect(Self.value(text, #"upkeep_update_duration_seconds_count{component="longhorn"}"#) == 1, "only completed updates are timed")
        #expect(Self.value(text, #"upkeep_update_duration_seconds_sum{component="longhorn"}"#) == 300)
        #expect(Self.value(text, #"upkeep_update_duration_seconds_bucket{component="longhorn",le="120.0"}"#) == 0)
        #expect(Self.value(text, #"upkeep_update_duration_seconds_bucket{component="longhorn",le="300.0"}"#) == 1)
        #expect(Self.value(text, #"upkeep_update_duration_seconds_count{component="flux"}"#) == 0)
        #expect(Self.value(text, #"upkeep_update_running{component="longhorn",to="v1.9.1"}"#) == 1)
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("upkeep_update_running{") }.count == 1, "\(text)")
        let running = try #require(Self.value(text, #"upkeep_update_running_seconds{component="longhorn",to="v1.9.1"}"#), "\(text)")
        #expect((5_400...5_700).contains(running), "measured to the scrape: \(running)")

        let file = try directory.write(text, to: "metrics.prom")
        let lint = try runProcess("/bin/sh", ["-c", "\(try Self.promtool()) check metrics < \(file)"])
        #expect(lint.status == 0, "promtool check metrics: \(lint.output)\(lint.error)")
        // It does judge: a malformed line is refused.
        let broken = try directory.write(text + "upkeep_broken{ 1\n", to: "broken.prom")
        #expect(try runProcess("/bin/sh", ["-c", "\(try Self.promtool()) check metrics < \(broken)"]).status != 0)

        // --output writes the same atomically, for node_exporter's textfile collector.
        let output = directory.file("textfile/upkeep.prom")
        try FileManager.default.createDirectory(atPath: directory.file("textfile"), withIntermediateDirectories: true)
        let written = try UpkeepBinary.run(["metrics", "--config", directory.file("upkeep.yaml"), "--output", output])
        #expect(written.status == 0 && written.output.isEmpty, "\(written.output)\(written.error)")
        #expect(try String(contentsOfFile: output, encoding: .utf8).contains("upkeep_backups 1"))
        #expect(!FileManager.default.fileExists(atPath: output + ".partial"))
    }

    @Test func aGateHoldingTheNextWaveIsExportedByGateAndStatusSaysWhy() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        var world = RolloutFixtures.world()
        world.gates = GateReport(prometheus: .firing(["KubeNodeNotReady"]), etcd: .noEmbeddedEtcd)
        var policy = RolloutFixtures.policy()
        policy.gates = GatePolicy(kinds: [.prometheus, .etcd], holdTimeoutSeconds: 3600)
        let engine = try RolloutEngine(rolloutID: "r1", plan: RolloutFixtures.plan(world), policy: policy)
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        let held = try RolloutFixtures.record(engine, world: world, in: store, start: start, until: { $0.gateHold != nil })
        #expect(held.gateHold?.holds == [GateHold(.prometheus, "alert firing: KubeNodeNotReady")])
        let config = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        let result = try UpkeepBinary.run(["metrics", "--config", config])
        #expect(result.status == 0, "\(result.error)")
        #expect(Self.value(result.output, #"upkeep_gate_held{gate="prometheus"}"#) == 1, "\(result.output)")
        #expect(Self.value(result.output, #"upkeep_gate_held{gate="etcd"}"#) == 0)
        #expect(Self.value(result.output, #"upkeep_gate_held{gate="blockingPods"}"#) == 0)
        #expect((Self.value(result.output, #"upkeep_gate_held_seconds{gate="prometheus"}"#) ?? 0) >= 50)
        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.status == 0, "\(status.error)")
        #expect(status.output.contains("gates hold hop 1 s1 since "), "\(status.output)")
        #expect(status.output.contains("  prometheus: alert firing: KubeNodeNotReady\n"))
        #expect(status.output.contains("gates read ") && status.output.contains("  etcd: no embedded etcd\n"))
    }

    @Test func serveAnswersMetricsAndHealthzAndStopsOnSIGTERM() async throws {
        let directory = try TemporaryDirectory()
        let config = try HistoryStatusCommandTests.recordedState(directory)
        let (process, url) = try Self.startServe(config: config)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        let scrape = try runProcess("curl", ["-sS", "--max-time", "10", "-D", "-", url])
        #expect(scrape.status == 0 && scrape.output.hasPrefix("HTTP/1.1 200"), "\(scrape.output)\(scrape.error)")
        #expect(scrape.output.contains("Content-Type: text/plain; version=0.0.4"), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_rollouts_total{outcome="completed"} 1"#), "\(scrape.output)")
        // The server's own bounds, every one listed from the start (docs/http.md).
        #expect(scrape.output.contains(#"upkeep_http_server_limits_reached_total{limit="header_read_timeout"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_http_client_limits_reached_total{limit="attempts"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_agent_client_limits_reached_total{limit="agent_busy"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_agent_client_limits_reached_total{limit="drain_timeout"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_http_server_limits_reached_total{limit="outbound_bytes"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_release_insecure_uses_total{source="mirror"} 0"#), "\(scrape.output)")
        #expect(scrape.output.contains(#"upkeep_artifact_refusals_total{reason="published_digest"} 0"#), "\(scrape.output)")
        let lint = try runProcess("/bin/sh", ["-c", "curl -sS --max-time 10 \(url) | \(try Self.promtool()) check metrics"])
        #expect(lint.status == 0, "\(lint.output)\(lint.error)")
        let health = try runProcess("curl", ["-sS", "--max-time", "10", url.replacingOccurrences(of: "/metrics", with: "/healthz")])
        #expect(health.output == "ok\n")
        let missing = try runProcess("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                                              url.replacingOccurrences(of: "/metrics", with: "/admin")])
        #expect(missing.output == "404")
        let posted = try runProcess("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X", "POST", url])
        #expect(posted.output == "405")

        kill(process.processIdentifier, SIGTERM)
        let stopBy = Date().addingTimeInterval(20)
        while process.isRunning && Date() < stopBy { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!process.isRunning, "serve did not stop on SIGTERM")
        #expect(process.terminationStatus == 0)
    }

    /// `upkeep serve` on a port of its choosing, and its metrics URL (from the line it prints first).
    static func startServe(config: String) throws -> (Process, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try UpkeepBinary.path())
        process.arguments = ["serve", "--config", config, "--listen", "127.0.0.1:0"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        var line = Data()
        let deadline = Date().addingTimeInterval(30)
        while !line.contains(UInt8(ascii: "\n")), Date() < deadline {
            line.append(output.fileHandleForReading.availableData)
        }
        let announced = String(decoding: line, as: UTF8.self)
        let url = announced.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        guard url.hasPrefix("http://127.0.0.1:") && url.hasSuffix("/metrics") else {
            kill(process.processIdentifier, SIGKILL)
            throw ServeDidNotStart(printed: announced)
        }
        return (process, url)
    }

    struct ServeDidNotStart: Error, CustomStringConvertible {
        var printed: String
        var description: String { "upkeep serve did not announce its metrics URL; it printed: \(printed)" }
    }

    @Test func theAlertRulesLoadAndFireOnTheSeriesTheirTestsGive() throws {
        let promtool = try Self.promtool()
        let check = try runProcess(promtool, ["check", "rules", "\(deployDirectory)/prometheus/upkeep-rules.yaml"])
        #expect(check.status == 0 && check.output.contains("SUCCESS: 20 rules found"), "\(check.output)\(check.error)")
        // Days of series at a 1 m evaluation interval: seconds of CPU, longer on a loaded machine.
        let test = try runProcess(promtool, ["test", "rules", "\(deployDirectory)/prometheus/upkeep-rules.test.yaml"], timeoutSeconds: 120)
        #expect(test.status == 0 && test.output.contains("SUCCESS"), "\(test.output)\(test.error)")
        // Every metric the rules use is one Upkeep exports.
        let directory = try TemporaryDirectory()
        let exported = Self.metricNames(try Self.exposition(directory)).union(Self.serveMetrics).union(["up"])
        let rules = try String(contentsOfFile: "\(deployDirectory)/prometheus/upkeep-rules.yaml", encoding: .utf8)
        let used = Self.referencedMetrics(rules.split(separator: "\n").filter { $0.contains("expr:") }.joined(separator: "\n"))
        #expect(!used.isEmpty && used.isSubset(of: exported), "unknown metrics in the rules: \(used.subtracting(exported).sorted())")
    }

    @Test func theDashboardQueriesOnlyExportedMetrics() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(deployDirectory)/grafana/upkeep-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10 && dashboard["uid"] as? String == "upkeep-rollouts")
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count >= panels.count)
        let directory = try TemporaryDirectory()
        let exported = Self.metricNames(try Self.exposition(directory)).union(Self.serveMetrics)
        let used = Self.referencedMetrics(expressions.joined(separator: "\n"))
        #expect(used.count >= 12 && used.isSubset(of: exported), "unknown metrics in the dashboard: \(used.subtracting(exported).sorted())")
    }

    /// `systemd-analyze verify` on the controller's unit as shipped (ExecStart pointed at the built binary).
    @Test func theControllerUnitPassesSystemdAnalyzeVerify() throws {
        let unit = try String(contentsOfFile: "\(deployDirectory)/upkeep.service", encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/local/bin/upkeep serve --config /etc/upkeep/upkeep.yaml --listen 127.0.0.1:9661\n"))
        let directory = try TemporaryDirectory()
        let path = try directory.write(unit.replacingOccurrences(of: "/usr/local/bin/upkeep ", with: try UpkeepBinary.path() + " "),
                                       to: "upkeep.service")
        let result = try runProcess("systemd-analyze", ["verify", path], timeoutSeconds: 60)
        #expect(result.status == 0 && result.output.isEmpty && result.error.isEmpty, "systemd-analyze: \(result.output)\(result.error)")
    }

    /// The daily certificate renewal (docs/pki.md, "Renewal"): the service runs `upkeep pki renew`
    /// once a CA exists, the timer daily; both pass `systemd-analyze verify`.
    @Test func theRenewalServiceAndTimerPassSystemdAnalyzeVerify() throws {
        let service = try String(contentsOfFile: "\(deployDirectory)/upkeep-renew.service", encoding: .utf8)
        #expect(service.contains("\nExecStart=/usr/local/bin/upkeep pki renew --config /etc/upkeep/upkeep.yaml\n"))
        #expect(service.contains("\nConditionPathExists=/etc/upkeep/pki/ca.key\n") && service.contains("\nReadWritePaths=/etc/upkeep/pki\n"))
        let timer = try String(contentsOfFile: "\(deployDirectory)/upkeep-renew.timer", encoding: .utf8)
        #expect(timer.contains("\nOnCalendar=daily\n") && timer.contains("\nPersistent=true\n"))
        let directory = try TemporaryDirectory()
        let servicePath = try directory.write(service.replacingOccurrences(of: "/usr/local/bin/upkeep ", with: try UpkeepBinary.path() + " "),
                                              to: "upkeep-renew.service")
        let timerPath = try directory.write(timer, to: "upkeep-renew.timer")
        let result = try runProcess("systemd-analyze", ["verify", servicePath, timerPath], timeoutSeconds: 60)
        #expect(result.status == 0 && result.output.isEmpty && result.error.isEmpty, "systemd-analyze: \(result.output)\(result.error)")
    }

    /// Sample names in an exposition (histogram series included).
    static func metricNames(_ exposition: String) -> Set<String> {
        Set(exposition.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
            line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
        })
    }

    /// The `upkeep_*` and `up` metric names PromQL text refers to.
    static func referencedMetrics(_ text: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: #"\b(upkeep_[a-z_]+|up)\b(?=\s*[{\[)=<>*/ ]|$)"#, options: [.anchorsMatchLines])
        let range = NSRange(text.startIndex..., in: text)
        return Set(pattern.matches(in: text, range: range).compactMap { Range($0.range(at: 1), in: text).map { String(text[$0]) } })
    }
}
