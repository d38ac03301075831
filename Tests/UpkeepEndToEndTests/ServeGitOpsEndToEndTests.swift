import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepProcess
import UpkeepStore

/// `upkeep serve` updates Longhorn and Flux on its own through the Git repository the sandbox's
/// Flux follows, by the path `upkeep update` takes: with `longhorn: none` it checks and commits
/// nothing; with `longhorn: minor`, `flux: minor` and an always-open window it commits Longhorn's
/// next minor, then Flux's (the order docs/serve.md states; git log as the witness), Flux applies
/// both (kubectl), and history records each as started by serve with its policy. Across both
/// serves and all their checks, `update.available` is told once per component and version.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct ServeGitOpsEndToEndTests {
    static let window = "maintenance: {windows: [\"daily 00:00-24:00\"]}\n"
    static let key = "e2e-serve-gitops-key-5d1e"

    @Test func serveUpdatesLonghornThenFluxThroughGitByPolicyAndNothingWithNone() async throws {
        let receiver = try await WebhookReceiver.start()
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let config = { (name: String, extra: String) in
                try sandbox.configWithWebhook(name, url: receiver.url("/upkeep"), key: Self.key, events: ["update.available"], extra: extra)
            }
            let gitOps = GitOpsEndToEndTests()
            let seeded = try await gitOps.log(sandbox)

            // none: serve checks and decides, and commits nothing.
            let none = try config("upkeep-none.yaml", "automation: {checkInterval: 1h, k3s: none, longhorn: none}\n" + Self.window)
            let quiet = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: none)
            let quietPort = try await ServeEndToEndTests.port(quiet)
            var state: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, !(state["decision"] as? String == "wait" && (state["checksTotal"] as? Int ?? 0) >= 1) {
                state = try await ServeEndToEndTests.status(quietPort)["serve"] as? [String: Any] ?? [:]
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(state["decision"] as? String == "wait" && state["reason"] as? String == "not-allowed-by-policy", "\(state)")
            #expect(try await gitOps.log(sandbox) == seeded, "longhorn: none commits nothing")
            kill(quiet.pid, SIGTERM)
            #expect(await quiet.exitCode(timeoutSeconds: 30) == 0, "\(quiet.output)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.7.2")

            // minor: Longhorn v1.7.2 → v1.8.0 (v1.9 has only a release candidate), then Flux v2.4.0 → v2.5.1.
            let minor = try config("upkeep-minor.yaml", "automation: {checkInterval: 1h, k3s: none, longhorn: minor, flux: minor}\n" + Self.window)
            let serve = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: minor)
            let port = try await ServeEndToEndTests.port(serve)
            _ = try await serve.waitForLine("Flux's update done", timeoutSeconds: 150) { $0.contains("flux update to v2.5.1: done") }
            let log = try await gitOps.log(sandbox)
            #expect(Array(log.prefix(3)) == ["upkeep flux: upgrade to v2.5.1", "upkeep longhorn: upgrade to v1.8.0 (chart 1.7.2 → 1.8.0)"] + seeded.prefix(1),
                    "Longhorn first, then Flux, one commit each: \(log)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.0")
            #expect(try await gitOps.fluxState(sandbox) == ("v2.5.1", "ghcr.io/fluxcd/source-controller:v1.5.0", "True"))

            let listed = try await sandbox.controller(["history", "--updates", "-o", "json"])
            let records = try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
            #expect(records.map { "\($0.component) \($0.from)→\($0.to) \($0.outcome.rawValue)" }
                    == ["flux v2.4.0→v2.5.1 completed", "longhorn v1.7.2→v1.8.0 completed"], "\(listed.output)")
            for record in records {
                let by = record.startedBy?.by
                #expect(by?.service == "serve" && by?.policy == "automation.\(record.component): minor", "\(String(describing: record.startedBy))")
            }
            let metrics = try await ServeEndToEndTests.get(port, "/metrics")
            #expect(metrics.contains(#"upkeep_serve_updates_total{component="longhorn"} 1"#)
                    && metrics.contains(#"upkeep_serve_updates_total{component="flux"} 1"#), "\(metrics)")
            // Nothing newer to take: the next decision waits, and nothing more is committed.
            var after: [String: Any] = [:]
            let settled = Date().addingTimeInterval(60)
            while Date() < settled, after["decision"] as? String != "wait" {
                after = try await ServeEndToEndTests.status(port)["serve"] as? [String: Any] ?? [:]
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(after["decision"] as? String == "wait" && after["longhornInstalled"] as? String == "v1.8.0"
                    && after["fluxInstalled"] as? String == "v2.5.1", "\(after)")
            #expect(try await gitOps.log(sandbox).count == log.count)
            kill(serve.pid, SIGTERM)
            #expect(await serve.exitCode(timeoutSeconds: 30) == 0, "\(serve.output)")

            // Told once per component and version, though two serves checked several times.
            let told = await receiver.wait(for: 3, timeoutSeconds: 30)
            let available = told.map { request -> String in
                let details = request.json?["details"] as? [String: String]
                return "\(request.json?["event"] as? String ?? "?") \(details?["component"] ?? "?") \(details?["available"] ?? "?")"
            }
            #expect(available.count == 3 && Set(available) == ["update.available k3s \(ServeEndToEndTests.stable)",
                                                               "update.available longhorn v1.8.0", "update.available flux v2.5.1"],
                    "\(available)")
        }
        await receiver.close()
    }
}
