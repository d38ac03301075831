import Foundation
import Testing
import UpkeepCore
import UpkeepNotifyTestSupport
import UpkeepStore
import UpkeepTestSupport

/// `upkeep metrics --query` against a real Prometheus (Debian's `prometheus`, started on
/// 127.0.0.1) that scrapes a real `upkeep serve`; the bounds against a stand-in that answers
/// too much or never.
@Suite(.serialized) struct MetricsQueryTests {
    /// Prometheus scraping `target` (host:port) every second, its data in `directory`.
    static func startPrometheus(_ directory: TemporaryDirectory, scraping target: String) throws -> (Process, port: Int) {
        let binary = "/usr/bin/prometheus"
        try #require(FileManager.default.isExecutableFile(atPath: binary), "prometheus is missing: run scripts/install-deps (Debian package prometheus)")
        let config = try directory.write("""
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: upkeep
                static_configs: [{targets: ["\(target)"]}]
            """, to: "prometheus.yml")
        let port = try unusedLoopbackPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config.file=\(config)", "--storage.tsdb.path=\(directory.file("tsdb"))", "--web.listen-address=127.0.0.1:\(port)",
                             "--log.level=warn"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: try directory.write("", to: "prometheus.log"))
        try process.run()
        return (process, port)
    }

    @Test func aQueryPrintsPrometheusAnswerAsATableOrJSONAndSaysWhyWhenThereIsNone() async throws {
        let directory = try TemporaryDirectory()
        _ = try HistoryStatusCommandTests.recordedState(directory)
        let store = try StateStore(stateDirectory: directory.file("state"))
        let now = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        for (id, component, outcome) in [("u1", "flux", ComponentUpdateRecord.Outcome.completed), ("u2", "flux", .reverted), ("u3", "longhorn", .running)] {
            try store.saveComponentUpdate(ComponentUpdateRecord(id: id, component: component, from: "v1", to: "v2", repository: "file:///fleet.git",
                                                                file: "x.yaml", startedAt: now.adding(seconds: -600),
                                                                finishedAt: outcome == .running ? nil : now.adding(seconds: -300), outcome: outcome))
        }
        let bare = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        let (serve, metricsURL) = try MetricsTests.startServe(config: bare)
        defer { kill(serve.processIdentifier, SIGKILL) }
        let target = metricsURL.dropFirst("http://".count).prefix { $0 != "/" }
        let (prometheus, port) = try Self.startPrometheus(directory, scraping: String(target))
        defer { kill(prometheus.processIdentifier, SIGKILL) }
        let config = try directory.write("stateDir: state\ngates:\n  prometheus: {url: \"http://127.0.0.1:\(port)\", timeout: 5s}\n", to: "query.yaml")
        let started = Date()

        // Until Prometheus has started and scraped serve once.
        func words(_ text: String) -> [[String]] { text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) } }
        var up: ProcessResult?
        while Date().timeIntervalSince(started) < 120 {
            up = try UpkeepBinary.run(["metrics", "--config", config, "--query", #"up{job="upkeep"}"#])
            if up?.status == 0 && up?.output.hasSuffix(" 1\n") == true { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let log = (try? String(contentsOfFile: directory.file("prometheus.log"), encoding: .utf8)) ?? ""
        #expect(up.map { words($0.output) } == [["__name__", "instance", "job", "VALUE"], ["up", String(target), "upkeep", "1"]],
                "\(up?.output ?? "")\(up?.error ?? "")\n\(log)")

        // A vector: one row per series, every label a column.
        let table = try UpkeepBinary.run(["metrics", "--config", config, "--query", #"upkeep_updates_total{component="flux"}"#])
        #expect(table.status == 0, "\(table.error)")
        let rows = words(table.output)
        #expect(rows.first == ["__name__", "component", "instance", "job", "outcome", "VALUE"], "\(table.output)")
        #expect(Set(rows.dropFirst().map { "\($0[4])=\($0[5])" }) == ["completed=1", "reverted=1", "failed=0", "failedForward=0"], "\(table.output)")
        let running = try UpkeepBinary.run(["metrics", "--config", config, "--query", "upkeep_update_running"])
        #expect(words(running.output) == [["__name__", "component", "instance", "job", "to", "VALUE"],
                                          ["upkeep_update_running", "longhorn", String(target), "upkeep", "v2", "1"]], "\(running.output)")

        // JSON: Prometheus's `data`, as its API writes it.
        let json = try UpkeepBinary.run(["metrics", "--config", config, "--query", "sum by (outcome) (upkeep_updates_total)", "-o", "json"])
        #expect(json.status == 0, "\(json.error)")
        let data = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        #expect(data["resultType"] as? String == "vector")
        let result = try #require(data["result"] as? [[String: Any]])
        #expect(result.count == 4 && result.allSatisfy { ($0["value"] as? [Any])?.count == 2 }, "\(json.output)")

        // A range selector (matrix): a row per sample with its time; a scalar: the value alone.
        let matrix = try UpkeepBinary.run(["metrics", "--config", config, "--query", #"up{job="upkeep"}[3s]"#])
        let samples = words(matrix.output)
        #expect(matrix.status == 0 && samples.first == ["__name__", "instance", "job", "TIME", "VALUE"], "\(matrix.output)\(matrix.error)")
        #expect(samples.count >= 2 && samples.dropFirst().allSatisfy { $0.count == 5 && $0[3].hasPrefix("20") && $0[3].hasSuffix("Z") && $0[4] == "1" },
                "\(matrix.output)")
        // A scalar, at a given time (a constant: which samples exist at a truncated second is
        // Prometheus's scrape timing, not the command's).
        let scalar = try UpkeepBinary.run(["metrics", "--config", config, "--query", "scalar(vector(1))", "--time",
                                           String(Int(Date().timeIntervalSince1970) - 1)])
        #expect(scalar.status == 0 && scalar.output == "VALUE\n1\n", "\(scalar.output)\(scalar.error)")
        // Values as Prometheus writes them: a string, NaN.
        let string = try UpkeepBinary.run(["metrics", "--config", config, "--query", #""up to date""#])
        #expect(string.status == 0 && string.output == "VALUE\nup to date\n", "\(string.output)\(string.error)")
        let nan = try UpkeepBinary.run(["metrics", "--config", config, "--query", "0/0"])
        #expect(nan.status == 0 && nan.output == "VALUE\nNaN\n", "\(nan.output)\(nan.error)")

        // Nothing matched: said, exit 1; an hour ago, before Prometheus ran, likewise.
        let none = try UpkeepBinary.run(["metrics", "--config", config, "--query", "upkeep_no_such_metric"])
        #expect(none.status == 1 && none.output.isEmpty, "\(none.output)")
        #expect(none.error.contains("Error: the query matched nothing: no series has samples"), "\(none.error)")
        let hourAgo = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-3600))
        let before = try UpkeepBinary.run(["metrics", "--config", config, "--query", #"up{job="upkeep"}"#, "--time", hourAgo, "-o", "json"])
        #expect(before.status == 1 && before.output == #"{"result":[],"resultType":"vector"}"# + "\n", "\(before.output)")
        #expect(before.error.contains("the query matched nothing at \(hourAgo)"), "\(before.error)")

        // PromQL Prometheus refuses: its error shown, exit 2.
        let broken = try UpkeepBinary.run(["metrics", "--config", config, "--query", "sum(upkeep_updates_total"])
        #expect(broken.status == 2 && broken.output.isEmpty, "\(broken.output)")
        #expect(broken.error.contains("Prometheus refused the query (HTTP 400, bad_data): ") && broken.error.contains("parse error")
                && broken.error.contains("; fix the PromQL"), "\(broken.error)")

        // Nobody listening: exit 8, naming the URL.
        let closed = try unusedLoopbackPort()
        let unreachable = try UpkeepBinary.run(["metrics", "--config", config, "--query", "up", "--prometheus", "http://127.0.0.1:\(closed)"])
        #expect(unreachable.status == 8, "\(unreachable.output)\(unreachable.error)")
        #expect(unreachable.error.contains("Prometheus at http://127.0.0.1:\(closed)/api/v1/query did not answer: ")
                && unreachable.error.contains("check the URL and that Prometheus runs"), "\(unreachable.error)")
    }

    @Test func theAnswerIsBoundedInSizeAndTime() async throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        // 9 MiB of series: refused whole, nothing printed.
        let series = String(repeating: #"{"metric":{"__name__":"x","pad":"\#(String(repeating: "p", count: 1000))"},"value":[1,"1"]},"#, count: 9 * 1024)
        let large = try await WebhookReceiver.start(then: .json(status: 200, body: #"{"status":"success","data":{"resultType":"vector","result":["#
                                                                + series + #"{"metric":{},"value":[1,"1"]}]}}"#))
        let tooLarge = try UpkeepBinary.run(["metrics", "--config", config, "--query", "x", "--prometheus", large.url("")])
        await large.close()
        #expect(tooLarge.status == 2 && tooLarge.output.isEmpty, "\(tooLarge.output)")
        #expect(tooLarge.error.contains("is larger than 8 MiB; narrow the query"), "\(tooLarge.error)")
        #expect(large.received.first.map { $0.method == "POST" && $0.path == "/api/v1/query" } == true, "\(large.received.map(\.uri))")

        // An answer that never comes: given up at --timeout.
        let silent = try await WebhookReceiver.start(then: .hang)
        let began = Date()
        let hung = try UpkeepBinary.run(["metrics", "--config", config, "--query", "x", "--prometheus", silent.url(""), "--timeout", "2"])
        await silent.close()
        #expect(hung.status == 8 && hung.error.contains("did not answer within 2 s"), "\(hung.error)")
        #expect(Date().timeIntervalSince(began) < 20)

        // Something else answering; no Prometheus configured; -o that is not a format.
        let page = try await WebhookReceiver.start(then: .json(status: 200, body: #"{"hello":"world"}"#))
        let other = try UpkeepBinary.run(["metrics", "--config", config, "--query", "x", "--prometheus", page.url("")])
        await page.close()
        #expect(other.status == 8 && other.error.contains("with something that is not Prometheus's query API"), "\(other.error)")
        let unset = try UpkeepBinary.run(["metrics", "--config", config, "--query", "up"])
        #expect(unset.status == 2 && unset.error.contains("no Prometheus to ask: set gates.prometheus.url"), "\(unset.error)")
        let format = try UpkeepBinary.run(["metrics", "--config", config, "--query", "up", "-o", "yaml"])
        #expect(format.status == 2 && format.error.contains("with --query, -o is table or json"), "\(format.error)")
        let time = try UpkeepBinary.run(["metrics", "--config", config, "--query", "up", "--time", "yesterday"])
        #expect(time.status == 2 && time.error.contains("--time yesterday: write RFC 3339"), "\(time.error)")
    }
}
