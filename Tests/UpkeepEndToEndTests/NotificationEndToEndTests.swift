import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepProcess
import UpkeepStore

/// `upkeep check` and `upkeep apply` on a sandbox cluster with a signed webhook sink: the
/// receiver on 127.0.0.1 hears the update found (once), then the rollout start, each node and
/// the end, in order, each signature checked by `openssl`, and nothing is left in the outbox
/// when apply exits; then maintenance mode switched on and off with `--notify`.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NotificationEndToEndTests {
    static let key = "e2e-webhook-key-7f3a9c"

    @Test func applyTellsASignedWebhookOfTheRolloutsStartNodesAndEnd() async throws {
        let receiver = try await WebhookReceiver.start()
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let config = try sandbox.configWithWebhook("upkeep-notify.yaml", url: receiver.url("/upkeep"), key: Self.key,
                                                       events: ["update.available", "rollout.started", "rollout.node-done", "rollout.finished",
                                                                "rollout.failed", "rollout.rolled-back", "maintenance.enabled", "maintenance.disabled"])
            // `check` tells of each update it finds, once however often it runs.
            for _ in 0..<2 {
                let check = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "check", "--component", "k3s"], timeoutSeconds: 60)
                #expect(check.status == 10, "\(check.output)")
            }
            let updates = receiver.received
            #expect(updates.count == 1 && updates.first?.json?["event"] as? String == "update.available", "\(updates.map(\.text))")
            #expect((updates.first?.json?["details"] as? [String: String])?["component"] == "k3s")
            let apply = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "apply", "--to", EndToEndTests.nextMinor, "--yes"],
                                                 timeoutSeconds: 240)
            #expect(apply.status == 0 && apply.output.contains("done: every node runs its target version"), "\(apply.output)")
            let got = Array(receiver.received.dropFirst(updates.count))
            let events = got.map { $0.json?["event"] as? String ?? "?" }
            #expect(events == ["rollout.started", "rollout.node-done", "rollout.node-done", "rollout.finished"], "\(events)")
            for request in got {
                #expect(try WebhookReceiver.opensslVerifies(request.header("x-upkeep-signature-256"), body: request.body, key: Self.key),
                        "\(request.text)")
                #expect(request.json?["cluster"] as? String == "e2e" && request.header("x-upkeep-delivery") == request.json?["id"] as? String)
            }
            #expect(Set(got.compactMap { $0.json?["id"] as? String }).count == got.count, "one id per event")
            let rollout = try await sandbox.history().first?.id
            #expect(got.allSatisfy { ($0.json?["details"] as? [String: String])?["rollout"] == rollout }, "\(rollout ?? "?")")
            #expect((got.last?.json?["details"] as? [String: String])?["target"] == EndToEndTests.nextMinor)

            // Maintenance mode tells the same sink when asked to (`--notify`), with its record.
            let before = receiver.received.count
            let enable = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "maintenance", "enable", "--reason", "kernel updates", "--notify"],
                                                  timeoutSeconds: 60)
            #expect(enable.status == 0 && !enable.output.contains("--notify:"), "\(enable.output)")
            let disable = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "maintenance", "disable", "--notify"], timeoutSeconds: 60)
            #expect(disable.status == 0 && !disable.output.contains("--notify:"), "\(disable.output)")
            let told = Array(receiver.received.dropFirst(before))
            #expect(told.map { $0.json?["event"] as? String ?? "?" } == ["maintenance.enabled", "maintenance.disabled"], "\(told.map(\.text))")
            for request in told {
                #expect(try WebhookReceiver.opensslVerifies(request.header("x-upkeep-signature-256"), body: request.body, key: Self.key),
                        "\(request.text)")
                let details = request.json?["details"] as? [String: String]
                #expect(details?["reason"] == "kernel updates" && details?["by"]?.contains("@") == true
                        && details?["period"]?.hasPrefix("m") == true && details?["suspended"] != nil, "\(request.text)")
            }
            let status = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "notify", "status", "-o", "json"], timeoutSeconds: 30)
            let rows = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [[String: Any]]
            #expect(rows?.first?["sent"] as? Int == 7 && rows?.first?["pending"] as? Int == 0, "\(status.output)")
        }
        await receiver.close()
    }
}
