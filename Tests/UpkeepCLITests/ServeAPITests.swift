import Foundation
import Testing
import UpkeepRollout
import UpkeepStore
import UpkeepTestSupport

/// `upkeep serve`'s status API as the built binary serves it: on loopback plain JSON read by
/// curl and by `upkeep status --server`; beyond loopback mutual TLS, where openssl s_client and
/// curl without a certificate or with an agent's are refused in the handshake and an
/// operator's certificate from the cluster CA reads it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ServeAPITests {
    /// A running `upkeep serve`, stopped with SIGTERM (SIGKILL if it does not stop).
    final class Served {
        let process = Process()
        let url: String
        let output = Pipe()

        init(config: String, listen: String) throws {
            process.executableURL = URL(fileURLWithPath: try UpkeepBinary.path())
            process.arguments = ["serve", "--config", config, "--listen", listen]
            process.standardOutput = output
            process.standardError = output
            try process.run()
            // Stdout and stderr share the pipe, so a log line (a failed check naming its
            // http:// source) may come before the announcement: look for the metrics URL.
            var read = Data()
            var metrics: String?
            let deadline = Date().addingTimeInterval(30)
            while metrics == nil, Date() < deadline, process.isRunning {
                read.append(output.fileHandleForReading.availableData)
                metrics = String(decoding: read, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
                    .first { $0.hasPrefix("http") && $0.hasSuffix("/metrics") }.map(String.init)
            }
            let announced = String(decoding: read, as: UTF8.self)
            url = (metrics ?? "").replacingOccurrences(of: "/metrics", with: "")
            try #require(url.hasPrefix("http"), "serve printed: \(announced)")
        }

        func stop() async throws {
            kill(process.processIdentifier, SIGTERM)
            let stopBy = Date().addingTimeInterval(20)
            while process.isRunning && Date() < stopBy { try await Task.sleep(nanoseconds: 50_000_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            #expect(process.terminationStatus == 0)
        }
    }

    @Test func onLoopbackTheAPIAnswersJSONAndStatusServerReadsIt() async throws {
        let directory = try TemporaryDirectory()
        let config = try HistoryStatusCommandTests.recordedState(directory)
        let served = try Served(config: config, listen: "127.0.0.1:0")
        #expect(served.url.hasPrefix("http://127.0.0.1:"))
        let list = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/v1/rollouts"])
        let records = try JSONDecoder().decode([RolloutRecord].self, from: Data(list.output.utf8))
        #expect(records.map(\.id) == ["r2", "r1"], "\(list.output)")
        let one = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/v1/rollouts/r1"])
        #expect(try JSONDecoder().decode(RolloutDetail.self, from: Data(one.output.utf8)).record.outcome == .completed, "\(one.output)")
        let limited = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/v1/rollouts?limit=1"])
        #expect(try JSONDecoder().decode([RolloutRecord].self, from: Data(limited.output.utf8)).map(\.id) == ["r2"])
        let codes = try ["/v1/rollouts/r9", "/v1/rollouts?limit=0", "/v1/other"].map { path in
            try runProcess("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "\(served.url)\(path)"]).output
        }
        #expect(codes == ["404", "400", "404"])
        let status = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/v1/status"])
        let body = try #require(try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any], "\(status.output)")
        #expect(body["serve"] == nil, "no automation: section, no loop: \(status.output)")
        #expect(((body["status"] as? [String: Any])?["rollout"] as? [String: Any])?["id"] as? String == "r2", "\(status.output)")

        // `upkeep status --server` prints what `upkeep status` prints from the database.
        let local = try UpkeepBinary.run(["--config", config, "status"])
        let remote = try UpkeepBinary.run(["status", "--server", served.url])
        #expect(remote.status == 0 && remote.output == local.output, "remote:\n\(remote.output)\(remote.error)\nlocal:\n\(local.output)")
        try await served.stop()
    }

    @Test func beyondLoopbackOnlyAnOperatorCertificateGetsThroughTheHandshake() async throws {
        let directory = try TemporaryDirectory()
        let config = try HistoryStatusCommandTests.recordedState(directory)
        let pki = directory.file("pki")
        for arguments in [["init"], ["issue", "controller", "--ip", "127.0.0.1"], ["issue", "agent", "node-1"], ["issue", "operator", "alice"]] {
            let issued = try UpkeepBinary.run(["pki"] + arguments + ["--dir", pki])
            try #require(issued.status == 0, "pki \(arguments): \(issued.error)")
        }
        try (String(contentsOfFile: config, encoding: .utf8)
             + "pki: {ca: pki/ca.crt, certificate: pki/controllers/controller.crt, key: pki/controllers/controller.key}\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let served = try Served(config: config, listen: "0.0.0.0:0")
        let port = try #require(served.url.split(separator: ":").last.map(String.init))
        #expect(served.url.hasPrefix("https://0.0.0.0:"), "\(served.url)")
        let url = "https://127.0.0.1:\(port)/v1/status"
        func curl(_ identity: [String]) throws -> ProcessResult {
            try runProcess("curl", ["-sS", "--max-time", "10", "--cacert", "\(pki)/ca.crt"] + identity + [url])
        }
        let anonymous = try curl([])
        #expect(anonymous.status != 0 && anonymous.output.isEmpty, "no certificate: \(anonymous.output)\(anonymous.error)")
        let agent = try curl(["--cert", "\(pki)/agents/node-1.crt", "--key", "\(pki)/agents/node-1.key"])
        #expect(agent.status != 0 && agent.output.isEmpty, "an agent's certificate: \(agent.output)\(agent.error)")
        let controller = try curl(["--cert", "\(pki)/controllers/controller.crt", "--key", "\(pki)/controllers/controller.key"])
        #expect(controller.status != 0 && controller.output.isEmpty, "a controller's certificate: \(controller.output)")
        let alice = try curl(["--cert", "\(pki)/operators/alice.crt", "--key", "\(pki)/operators/alice.key"])
        #expect(alice.status == 0 && alice.output.contains("\"status\""), "an operator's certificate: \(alice.output)\(alice.error)")

        // openssl as the peer: a request over the handshake gets an answer with the operator's
        // certificate only (TLS 1.3: the server's refusal arrives as an alert after the client's Finished).
        func sClient(_ identity: String) throws -> String {
            try runProcess("/bin/sh", ["-c", "printf 'GET /v1/rollouts HTTP/1.1\\r\\nHost: upkeep\\r\\nConnection: close\\r\\n\\r\\n' | "
                                       + "timeout 10 openssl s_client -quiet -ign_eof -connect 127.0.0.1:\(port) -CAfile \(pki)/ca.crt \(identity) 2>&1"]).output
        }
        let bare = try sClient("")
        #expect(!bare.contains("HTTP/1.1 200") && bare.contains("alert"), "\(bare)")
        let operatorAnswer = try sClient("-cert \(pki)/operators/alice.crt -key \(pki)/operators/alice.key")
        #expect(operatorAnswer.contains("HTTP/1.1 200") && operatorAnswer.contains("\"r2\""), "\(operatorAnswer)")

        // `upkeep status --server` with the operator's certificate, the server checked as a controller of the CA.
        let remote = try UpkeepBinary.run(["status", "--server", "https://127.0.0.1:\(port)", "--ca", "\(pki)/ca.crt",
                                           "--cert", "\(pki)/operators/alice.crt", "--key", "\(pki)/operators/alice.key"])
        #expect(remote.status == 0 && remote.output.contains("r2"), "\(remote.output)\(remote.error)")
        let withAgent = try UpkeepBinary.run(["status", "--server", "https://127.0.0.1:\(port)", "--ca", "\(pki)/ca.crt",
                                              "--cert", "\(pki)/agents/node-1.crt", "--key", "\(pki)/agents/node-1.key"])
        #expect(withAgent.status == 2 && withAgent.error.contains("operator"), "\(withAgent.output)\(withAgent.error)")
        try await served.stop()
    }

    @Test func aFailingCheckBacksOffAndShowsInTheLogTheMetricsAndTheStatus() async throws {
        let directory = try TemporaryDirectory()
        let config = try HistoryStatusCommandTests.recordedState(directory)
        try (String(contentsOfFile: config, encoding: .utf8) + "kubeconfig: /nonexistent/kubeconfig\n"
             + "releases: {githubAPI: \"http://127.0.0.1:9/\", channelServer: \"http://127.0.0.1:9/\", insecure: true}\n"
             + "automation: {checkInterval: 1h, k3s: minor}\n").write(toFile: config, atomically: true, encoding: .utf8)
        let served = try Served(config: config, listen: "127.0.0.1:0")
        var state: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, state["reason"] as? String != "check-failing" {
            let status = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/v1/status"])
            let body = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any]
            state = body?["serve"] as? [String: Any] ?? [:]
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(state["reason"] as? String == "check-failing" && state["checkFailures"] as? Int == 1, "\(state)")
        #expect((state["lastCheckError"] as? String)?.contains("/nonexistent/kubeconfig") == true, "\(state)")
        // The next try 30 s after the first failure, said in the status.
        #expect(state["until"] as? String != nil, "\(state)")
        let metrics = try runProcess("curl", ["-sS", "--max-time", "10", "\(served.url)/metrics"]).output
        #expect(metrics.contains("upkeep_serve_check_failures 1\n") && metrics.contains(#"upkeep_serve_checks_total{result="failed"} 1"#)
                && metrics.contains(#"upkeep_serve_waiting{reason="check-failing"} 1"#)
                && metrics.contains(#"upkeep_serve_limits_total{limit="check_failed"} 1"#), "\(metrics)")
        let lint = try runProcess("/bin/sh", ["-c", "curl -sS --max-time 10 \(served.url)/metrics | \(try MetricsTests.promtool()) check metrics"])
        #expect(lint.status == 0, "\(lint.output)\(lint.error)")
        try await served.stop()
        let log = String(decoding: served.output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("update check failed (1 in a row)") && log.contains("next try at"), "\(log)")
    }
}
