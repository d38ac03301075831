import Foundation
import Testing
import UpkeepCore
import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepStore
import UpkeepTestSupport

/// `validate.applications` Prometheus queries (`{prometheus: PROMQL, below: N, whenEmpty}`)
/// asked of a real Prometheus (Debian's `prometheus`) that scrapes a real `upkeep serve`. The
/// cluster is the sandbox's simulated API with no node started, so the cluster's checks are not
/// healthy: these tests read the applications' verdicts from `-o json`.
@Suite(.serialized) struct ValidateQueryTests {
    struct Check: Decodable {
        var name: String
        var verdict: String
        var summary: String
        var evidence: [String]
        var action: String?
    }

    struct Report: Decodable {
        var checks: [Check]
    }

    static func applications(_ config: String) throws -> (status: Int32, checks: [String: Check]) {
        let run = try UpkeepBinary.run(["validate", "--applications", "-o", "json", "--config", config])
        let report = try JSONDecoder().decode(Report.self, from: Data(run.output.utf8))
        return (run.status, Dictionary(report.checks.filter { $0.name.hasPrefix("applications/") }.map { ($0.name, $0) }, uniquingKeysWith: { $1 }))
    }

    @Test func everySampleBelowTheThresholdIsHealthyAndEmptyIsAsDeclared() async throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        let now = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        try store.saveComponentUpdate(ComponentUpdateRecord(id: "u1", component: "longhorn", from: "v1", to: "v2", repository: "file:///fleet.git",
                                                            file: "x.yaml", startedAt: now.adding(seconds: -60), finishedAt: nil, outcome: .running))
        let bare = try directory.write("stateDir: state\n", to: "serve.yaml")
        let (serve, metricsURL) = try MetricsTests.startServe(config: bare)
        defer { kill(serve.processIdentifier, SIGKILL) }
        let target = String(metricsURL.dropFirst("http://".count).prefix { $0 != "/" })
        let (prometheus, port) = try MetricsQueryTests.startPrometheus(directory, scraping: target)
        defer { kill(prometheus.processIdentifier, SIGKILL) }
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0, replicas: 1))
        defer { Task { await api.close() } }

        let gates = "gates:\n  prometheus: {url: \"http://127.0.0.1:\(port)\", timeout: 5s}\n"
        let config = try directory.write("""
            kubeconfig: \(api.kubeconfig)
            stateDir: state
            \(gates)validate:
              applications:
                - {prometheus: "upkeep_update_running", below: 2}
                - {prometheus: "sum(upkeep_update_running) or vector(0)", below: 1}
                - {prometheus: "upkeep_no_such_metric", below: 1}
                - {prometheus: "upkeep_no_such_metric > 0", below: 1, whenEmpty: healthy}
                - {prometheus: "0/0", below: 1}
            """, to: "upkeep.yaml")

        // Until Prometheus has started and scraped serve once.
        let started = Date()
        var up: ProcessResult?
        while Date().timeIntervalSince(started) < 120 {
            up = try UpkeepBinary.run(["metrics", "--config", config, "--query", "upkeep_update_running"])
            if up?.status == 0 && up?.output.hasSuffix(" 1\n") == true { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        try #require(up?.status == 0, "Prometheus never scraped upkeep serve: \(up?.output ?? "")\(up?.error ?? "")")

        let (status, checks) = try Self.applications(config)
        #expect(status == 1, "the cluster's own checks are not healthy here")
        let below2 = try #require(checks["applications/prometheus upkeep_update_running"], "\(checks.keys.sorted())")
        #expect(below2.verdict == "healthy" && below2.summary == "1 of 1 samples below 2", "\(below2)")
        #expect(below2.evidence.first?.contains(#"component="longhorn""#) == true && below2.evidence.first?.hasSuffix(": 1") == true, "\(below2.evidence)")
        let running = "applications/prometheus sum(upkeep_update_running) or vector(0)"
        let below1 = try #require(checks[running], "\(checks.keys.sorted())")
        #expect(below1.verdict == "unhealthy" && below1.summary == "1 of 1 samples not below 1" && below1.evidence == ["{}: 1"], "\(below1)")
        #expect(below1.action?.contains("upkeep metrics --query") == true)
        let table = try UpkeepBinary.run(["validate", "--applications", "--config", config]).output
        #expect(table.contains("healthy   applications/prometheus upkeep_update_running: 1 of 1 samples below 2\n"), "\(table)")
        #expect(table.contains("UNHEALTHY \(running): 1 of 1 samples not below 1\n"), "\(table)")
        #expect(checks["applications/prometheus upkeep_no_such_metric"]?.verdict == "unhealthy")
        #expect(checks["applications/prometheus upkeep_no_such_metric"]?.summary == "the query matched nothing (whenEmpty: unhealthy)")
        #expect(checks["applications/prometheus upkeep_no_such_metric > 0"]?.verdict == "healthy")
        #expect(checks["applications/prometheus 0/0"]?.verdict == "unhealthy" && checks["applications/prometheus 0/0"]?.evidence == ["{}: NaN"])

        // Healed: the update finished, nothing runs, every sample (0) below 1.
        var finished = try #require(try store.componentUpdates(limit: 1).first)
        finished.outcome = .completed
        finished.finishedAt = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        try store.saveComponentUpdate(finished)
        var healed: Check?
        while Date().timeIntervalSince(started) < 180 {
            healed = try Self.applications(config).checks[running]
            if healed?.verdict == "healthy" { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(healed?.verdict == "healthy" && healed?.summary == "1 of 1 samples below 1", "\(String(describing: healed))")

        // Prometheus not answering: unknown, never a pass.
        let closed = try unusedLoopbackPort()
        let unreachable = try directory.write("""
            kubeconfig: \(api.kubeconfig)
            stateDir: state
            gates:
              prometheus: {url: "http://127.0.0.1:\(closed)", timeout: 2s}
            validate:
              applications: [{prometheus: "up", below: 1}]
            """, to: "closed.yaml")
        let unknown = try #require(try Self.applications(unreachable).checks["applications/prometheus up"])
        #expect(unknown.verdict == "unknown" && unknown.summary.hasPrefix("cannot ask Prometheus: Prometheus at http://127.0.0.1:\(closed)/api/v1/query"),
                "\(unknown)")
    }

    @Test func aQueryNeedsAPrometheusAndAThreshold() throws {
        let directory = try TemporaryDirectory()
        for (text, problem) in [
            ("validate:\n  applications: [{prometheus: up, below: 1}]\n", "needs a Prometheus to ask: set gates.prometheus.url"),
            ("gates:\n  prometheus: {url: \"http://127.0.0.1:1\"}\nvalidate:\n  applications: [{prometheus: up}]\n", "is required: the number every sample of the query must stay below"),
            ("gates:\n  prometheus: {url: \"http://127.0.0.1:1\"}\nvalidate:\n  applications: [{prometheus: up, below: lots}]\n", "is required: the number every sample of the query must stay below"),
            ("gates:\n  prometheus: {url: \"http://127.0.0.1:1\"}\nvalidate:\n  applications: [{prometheus: up, below: 1, whenEmpty: maybe}]\n",
             "must be healthy or unhealthy"),
        ] {
            let config = try directory.write("stateDir: state\n" + text, to: "upkeep.yaml")
            let run = try UpkeepBinary.run(["validate", "--applications", "--config", config])
            #expect(run.status == 2 && run.error.contains(problem), "\(text): \(run.error)")
        }
    }
}
