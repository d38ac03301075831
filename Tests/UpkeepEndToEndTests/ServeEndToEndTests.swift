import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepCore
import UpkeepProcess
import UpkeepRollout
import UpkeepStore

/// `upkeep serve` left running on a sandbox with `automation.k3s: minor` and an always-open
/// window: nobody types anything, yet it finds the update, tells a signed webhook, and brings
/// every node to the channel's version (kubectl as the witness); a SIGKILL of serve in the middle
/// of the rollout and a restart finish it. Then a rollout started by `upkeep apply` beside serve
/// shows in serve's `/v1/status`, and serve starts nothing while it runs.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct ServeEndToEndTests {
    static let key = "e2e-serve-webhook-key-41c2"
    /// The sandbox's stable channel from v1.31.4: the newest release of the second-newest minor.
    static let stable = "v1.32.4+k3s1"

    @Test func serveRollsOutOnItsOwnSurvivesASigkillAndShowsAnApplyInItsStatus() async throws {
        let receiver = try await WebhookReceiver.start()
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let config = try sandbox.configWithWebhook("upkeep-serve.yaml", url: receiver.url("/upkeep"), key: Self.key,
                                                       events: ["rollout.started", "rollout.node-done", "rollout.finished", "rollout.failed",
                                                                "rollout.rolled-back"],
                                                       extra: "automation: {checkInterval: 1h, k3s: minor, channel: stable}\n"
                                                           + "maintenance: {windows: [\"daily 00:00-24:00\"]}\n")
            let serve = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: config)
            // The first node done: serve dies as in a crash, mid-rollout.
            _ = try await serve.waitForPhase("server-1", "done", timeoutSeconds: 120)
            await serve.killHard()
            let history = try await sandbox.history()
            let rollout = try #require(history.first, "no rollout recorded")
            #expect(rollout.target.description == Self.stable && rollout.outcome == nil, "\(rollout.id) \(String(describing: rollout.outcome))")
            // Who did what: serve, and the policy that decided.
            let started = try #require(rollout.startedBy, "no one recorded as starting \(rollout.id)")
            #expect(started.kind == .apply && started.by.service == "serve" && started.by.policy?.contains("automation.k3s: minor") == true,
                    "\(started)")
            let again = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: config)
            let port = try await Self.port(again)
            _ = try await again.waitForLine("the rollout carried on and done", timeoutSeconds: 150) {
                $0.contains("rollout \(rollout.id): done")
            }
            try await sandbox.expectAllNodes(at: Self.stable, "after serve's rollout")
            let metrics = try await Self.get(port, "/metrics")
            let resumed = "upkeep_serve_rollouts_total{how=\"resume\"} 1"
            #expect(metrics.contains(resumed), "\(metrics)")
            let finished = try #require(try await sandbox.history().first)
            #expect(finished.id == rollout.id && finished.outcome == .completed, "\(finished.id) \(String(describing: finished.outcome))")

            try await Self.expectToldSigned(receiver)
            try await Self.expectApplyShownBeside(sandbox, config: config, port: port)
            kill(again.pid, SIGTERM)
            #expect(await again.exitCode(timeoutSeconds: 30) == 0, "serve did not stop on SIGTERM:\n\(again.output)")
        }
        await receiver.close()
    }

    /// Another controller holds the Lease `kube-system/upkeep` (written with kubectl and renewed
    /// every 2 s, a 12 s duration): serve, with an update due and a window always open, starts
    /// nothing; `/v1/status` shows it waiting (`lock-held`, naming the holder) and
    /// `upkeep_serve_waiting{reason="lock-held"}` is 1. Once the other stops renewing, the Lease
    /// lapses and serve takes it over and starts the rollout.
    @Test func serveWaitsWhileAnotherControllerHoldsTheLeaseAndStartsOnceItLapses() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let other = "ctl-other-0badc0de (apply r20261207-101500)"
            let config = "\(sandbox.directory)/upkeep-serve-lease.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8)
                 + "\nautomation: {checkInterval: 1h, k3s: minor, channel: stable}\nmaintenance: {windows: [\"daily 00:00-24:00\"]}\n"
                 + ClusterLeaseEndToEndTests.shortLease + "\n").write(toFile: config, atomically: true, encoding: .utf8)
            try await sandbox.writeClusterLease(holder: other, durationSeconds: 12)
            let renewer = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    if Task.isCancelled { return }
                    try? await sandbox.writeClusterLease(holder: other, durationSeconds: 12)
                }
            }
            defer { renewer.cancel() }
            let serve = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: config)
            defer { kill(serve.pid, SIGKILL) }
            let port = try await Self.port(serve)

            var waiting: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(45)
            while Date() < deadline, waiting["reason"] as? String != "lock-held" {
                waiting = try await Self.status(port)["serve"] as? [String: Any] ?? [:]
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(waiting["decision"] as? String == "wait" && waiting["reason"] as? String == "lock-held"
                    && (waiting["detail"] as? String ?? "").contains(other), "serve does not wait for the Lease: \(waiting)\n\(serve.output)")
            let metrics = try await Self.get(port, "/metrics")
            #expect(metrics.contains("upkeep_serve_waiting{reason=\"lock-held\"} 1"), "\(metrics)")
            // Held for longer than a whole Lease duration: still nothing started.
            try await Task.sleep(for: .seconds(12))
            let still = try await Self.status(port)["serve"] as? [String: Any] ?? [:]
            #expect(still["reason"] as? String == "lock-held", "\(still)")
            #expect(try await sandbox.history().isEmpty, "serve started a rollout while another controller held the Lease")
            #expect(try await sandbox.clusterLease()?["holderIdentity"] as? String == other)

            renewer.cancel()
            _ = try await serve.waitForLine("serve taking the lapsed Lease over", timeoutSeconds: 60) {
                $0.contains("took the cluster Lease over from \(other)")
            }
            let started = try #require(try await sandbox.history().first, "serve started no rollout once the Lease lapsed:\n\(serve.output)")
            #expect(started.target.description == Self.stable && started.startedBy?.by.service == "serve", "\(started.id) \(started.target)")
            let lease = try #require(try await sandbox.clusterLease())
            #expect((lease["holderIdentity"] as? String ?? "").hasSuffix("(apply \(started.id))") && lease["leaseTransitions"] as? Int == 1, "\(lease)")
        }
    }

    /// Told, signed, once each: started and finished, whatever the kill did between them.
    static func expectToldSigned(_ receiver: WebhookReceiver) async throws {
        let got = await receiver.wait(for: 4, timeoutSeconds: 30)
        let events = got.map { $0.json?["event"] as? String ?? "?" }
        #expect(events.first == "rollout.started" && events.last == "rollout.finished" && events.filter { $0 == "rollout.started" }.count == 1,
                "\(events)")
        for request in got {
            #expect(try WebhookReceiver.opensslVerifies(request.header("x-upkeep-signature-256"), body: request.body, key: Self.key), "\(request.text)")
        }

    }

    /// Up to date now, serve waits; an operator's apply beside it shows in `/v1/status`, and
    /// serve starts nothing while it runs.
    static func expectApplyShownBeside(_ sandbox: EndToEndSandbox, config: String, port: Int) async throws {
        let status = try await Self.status(port)
        let serveState = try #require(status["serve"] as? [String: Any])
        #expect(serveState["policy"] as? String == "automation.k3s: minor (channel stable)", "\(serveState)")
        let apply = try sandbox.start(["apply", "--to", "v1.33.0+k3s1", "--yes"], config: config)
        var seenInProgress = false
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, !seenInProgress {
            let body = try await Self.status(port)
            let report = body["status"] as? [String: Any]
            let record = report?["rollout"] as? [String: Any]
            seenInProgress = report?["inProgress"] as? Bool == true && record?["target"] as? String == "v1.33.0+k3s1"
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(seenInProgress, "apply's rollout never showed in serve's /v1/status")
        #expect(await apply.exitCode(timeoutSeconds: 150) == 0, "\(apply.output)")
        try await sandbox.expectAllNodes(at: "v1.33.0+k3s1", "after the operator's apply")
        let rollouts = try await sandbox.history()
        #expect(rollouts.count == 2, "serve started nothing beside apply: \(rollouts.map { "\($0.id) \($0.target)" })")
        let listed = try await Self.get(port, "/v1/rollouts")
        #expect((try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [[String: Any]])?.count == 2, "\(listed)")
    }

    /// `/v1/status` of the serve on `port`, as JSON.
    static func status(_ port: Int) async throws -> [String: Any] {
        let text = try await get(port, "/v1/status")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
    }

    /// GET with curl, a peer of its own (at most 10 s).
    static func get(_ port: Int, _ path: String) async throws -> String {
        let outcome = try await ProcessRun.run("curl", ["-fsS", "--max-time", "10", "http://127.0.0.1:\(port)\(path)"], timeoutSeconds: 15)
        try #require(outcome.status == 0, "curl \(path): \(outcome.output)")
        return outcome.output
    }

    /// The port `serve` says it listens on.
    static func port(_ serve: BackgroundRun) async throws -> Int {
        let line = try await serve.waitForLine("the listening address", timeoutSeconds: 30) { $0.hasPrefix("serving metrics on http://127.0.0.1:") }
        let port = line.dropFirst("serving metrics on http://127.0.0.1:".count).prefix { $0.isNumber }
        return try #require(Int(port), "\(line)")
    }
}
