import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepStore
import UpkeepTestSupport

/// The built `upkeep` as an operator runs it: `notify test` and `notify status` against
/// receivers on 127.0.0.1, and the outbox across a `kill -9` of a process mid-delivery.
@Suite(.serialized, .timeLimit(.minutes(3))) struct NotifyCommandTests {
    static let key = "a1b2c3d4e5f60718-hmac"

    /// `DIR/upkeep.yaml` with a state directory and `sinks` (YAML list entries), and the webhook key file.
    static func config(_ directory: TemporaryDirectory, sinks: [String]) throws -> String {
        let secret = try directory.write(key + "\n", to: "webhook.secret")
        chmod(secret, 0o600)
        return try directory.write("stateDir: state\ncluster: lab\nnotifications:\n" + sinks.map { "  - \($0)\n" }.joined(), to: "upkeep.yaml")
    }

    static func status(_ config: String) throws -> [[String: Any]] {
        let result = try UpkeepBinary.run(["notify", "status", "--config", config, "-o", "json"])
        try #require(result.status == 0, "\(result.output)\(result.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]])
    }

    @Test func notifyTestReachesEverySinkAndStatusCountsIt() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start()
        let config = try Self.config(directory, sinks: [
            "{type: webhook, name: hook, url: \"\(receiver.url("/hook"))\", secretFile: webhook.secret, events: [rollout.failed]}",
            "{type: slack, name: chat, url: \"\(receiver.url("/slack"))\"}",
        ])
        let result = try UpkeepBinary.run(["notify", "test", "--config", config], timeoutSeconds: 60)
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(result.output.contains("1 hook (webhook http://127.0.0.1:\(receiver.port)/…): sent"), "\(result.output)")
        #expect(result.output.contains("2 chat (slack http://127.0.0.1:\(receiver.port)/…): sent"), "\(result.output)")
        let got = receiver.received
        let hook = try #require(got.first { $0.path == "/hook" }, "the webhook's filter does not hold back a test")
        #expect(hook.json?["event"] as? String == "notification.test" && hook.json?["cluster"] as? String == "lab")
        #expect(try WebhookReceiver.opensslVerifies(hook.header("x-upkeep-signature-256"), body: hook.body, key: Self.key))
        let chat = try #require(got.first { $0.path == "/slack" })
        #expect((chat.json?["text"] as? String)?.contains("Upkeep [lab]: Test notification") == true, "\(chat.text)")
        let rows = try Self.status(config)
        #expect(rows.map { $0["sink"] as? String } == ["hook", "chat"] && rows.allSatisfy { $0["sent"] as? Int == 1 && $0["pending"] as? Int == 0 },
                "\(rows)")

        // One sink, chosen by position; a sink that refuses makes the command fail and says why.
        receiver.answer(then: .status(410))
        let refused = try UpkeepBinary.run(["notify", "test", "--config", config, "--sink", "2"], timeoutSeconds: 60)
        #expect(refused.status == 1 && refused.output.contains("2 chat (slack http://127.0.0.1:\(receiver.port)/…): given up: HTTP 410"),
                "\(refused.output)\(refused.error)")
        #expect(!refused.output.contains("1 hook"))
        let table = try UpkeepBinary.run(["notify", "status", "--config", config])
        #expect(table.status == 0 && table.output.contains("GIVEN UP") && table.output.contains("HTTP 410"), "\(table.output)")
        let bad = try UpkeepBinary.run(["notify", "test", "--config", config, "--sink", "3"])
        #expect(bad.status == 2 && bad.error.contains("--sink 3: upkeep.yaml lists 2 sinks"), "\(bad.error)")
        await receiver.close()
    }

    @Test func aSecretFileOthersCanReadStopsTheCommandBeforeItSendsAnything() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.config(directory, sinks: ["{type: webhook, url: \"http://127.0.0.1:9/x\", secretFile: webhook.secret}"])
        chmod(directory.file("webhook.secret"), 0o640)
        let result = try UpkeepBinary.run(["notify", "test", "--config", config])
        #expect(result.status == 2 && result.error.contains("notifications[1].secretFile") && result.error.contains("chmod 600"), "\(result.error)")
        #expect(!result.error.contains(Self.key))
    }

    /// The daily `pki renew` is the expiry check: a certificate within 14 days of its end is
    /// told of once, however often the check runs.
    @Test func pkiRenewTellsOfACertificateCloseToItsEndOnce() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start()
        let pki = directory.file("pki")
        for arguments in [["init", "--days", "60"], ["issue", "controller", "--days", "30"], ["issue", "agent", "node-1", "--days", "10"]] {
            let made = try UpkeepBinary.run(["pki"] + arguments + ["--dir", pki])
            try #require(made.status == 0, "\(made.error)")
        }
        let config = try Self.config(directory, sinks: [
            "{type: webhook, name: hook, url: \"\(receiver.url())\", secretFile: webhook.secret, events: [certificate.expiring]}",
        ])
        for _ in 0..<2 {
            let renew = try UpkeepBinary.run(["pki", "renew", "--config", config, "--dir", pki], timeoutSeconds: 60)
            #expect(renew.status == 0 && renew.output.contains("is due for renewal"), "\(renew.output)\(renew.error)")
        }
        await receiver.close()
        let got = receiver.received
        try #require(got.count == 1, "\(got.map(\.text))")
        #expect(got[0].json?["event"] as? String == "certificate.expiring")
        let details = try #require(got[0].json?["details"] as? [String: String])
        #expect(details["identity"] == "upkeep://agent/node-1" && ["9", "10"].contains(details["daysLeft"] ?? ""), "\(details)")
        #expect(try WebhookReceiver.opensslVerifies(got[0].header("x-upkeep-signature-256"), body: got[0].body, key: Self.key))
    }

    /// kill -9 of the process delivering: the row stays claimed, `upkeep serve` sends it again
    /// once the claim has expired, with the same id and a signature that still verifies.
    @Test func aNotificationCutOffByKill9IsDeliveredByServeWithTheSameID() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(then: .hang)
        let config = try Self.config(directory, sinks: [
            "{type: webhook, name: hook, url: \"\(receiver.url())\", secretFile: webhook.secret, timeoutSeconds: 2}",
        ])
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: try UpkeepBinary.path())
        sender.arguments = ["notify", "test", "--config", config]
        sender.standardOutput = FileHandle.nullDevice
        sender.standardError = FileHandle.nullDevice
        try sender.run()
        defer { if sender.isRunning { kill(sender.processIdentifier, SIGKILL) } }
        let first = await receiver.wait(for: 1, timeoutSeconds: 30)
        try #require(first.count == 1, "the delivery never reached the receiver")
        kill(sender.processIdentifier, SIGKILL)
        sender.waitUntilExit()
        #expect(sender.terminationReason == .uncaughtSignal)
        let held = try Self.status(config)
        #expect(held.first?["pending"] as? Int == 1, "still in the outbox: \(held)")

        receiver.answer(then: .status(200))
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: try UpkeepBinary.path())
        serve.arguments = ["serve", "--config", config, "--listen", "127.0.0.1:0"]
        serve.standardOutput = FileHandle.nullDevice
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        // The claim lasted the 2 s timeout plus 15 s of grace from the first attempt.
        let both = await receiver.wait(for: 2, timeoutSeconds: 60)
        kill(serve.processIdentifier, SIGTERM)
        serve.waitUntilExit()
        await receiver.close()
        try #require(both.count == 2, "serve did not deliver the cut-off notification: \(both.count) request(s)")
        #expect(both[0].header("x-upkeep-delivery") == both[1].header("x-upkeep-delivery") && both[0].body == both[1].body)
        #expect(both[1].json?["event"] as? String == "notification.test")
        #expect(try WebhookReceiver.opensslVerifies(both[1].header("x-upkeep-signature-256"), body: both[1].body, key: Self.key))
        let after = try Self.status(config)
        #expect(after.first?["sent"] as? Int == 1 && after.first?["pending"] as? Int == 0, "\(after)")
        #expect(serve.terminationStatus == 0)
    }
}
