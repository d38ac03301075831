import Foundation
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepPOSIX
import UpkeepNotify
import UpkeepNotifyTestSupport
import UpkeepStore
import UpkeepTestSupport

/// Each sink's request for one event, as its service documents it (docs/notifications.md):
/// built without a socket, checked field by field, the webhook's signature by `openssl`.
@Suite struct NotificationFormatTests {
    static let event = NotificationEvent(.rolloutFailed, summary: "Rollout r1 to v1.31.4+k3s1 failed, not rolled back: agent-1 <unhealthy> & more",
                                         details: ["rollout": "r1", "target": "v1.31.4+k3s1", "cause": "agent-1 <unhealthy> & more"],
                                         cluster: "prod-eu", at: Instant(milliseconds: 1_796_000_000_000), id: "5f0c2a52-7d7e-4d8e-9a57-0d7c2f0e9b11")

    /// A sink of `kind` to `url`, its secret or token in a 0600 file of `directory`.
    static func sink(_ kind: NotificationSink.Kind, _ url: String, secret: String? = nil, token: String? = nil,
                     in directory: TemporaryDirectory) throws -> ResolvedSink {
        func file(_ name: String, _ text: String?) throws -> String? {
            guard let text else { return nil }
            let path = try directory.write(text + "\n", to: name)
            chmod(path, 0o600)
            return path
        }
        return try NotificationSink(kind: kind, key: kind.rawValue, position: 1, url: url, secretFile: try file("secret", secret),
                                    tokenFile: try file("token", token)).load()
    }

    static func header(_ request: SinkRequest, _ name: String) -> String? {
        request.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func theWebhookSendsTheStoredJSONSignedAsOpenSSLComputesIt() throws {
        let directory = try TemporaryDirectory()
        let sink = try Self.sink(.webhook, "https://hooks.example/upkeep", secret: "s3cr3t-key-0123456789", in: directory)
        let body = Self.event.json
        let request = NotificationFormat.request(Self.event, body: body, to: sink)
        #expect(request.url.description == "https://hooks.example/upkeep")
        #expect(request.body == Array(body.utf8), "the body is the stored event, byte for byte")
        let object = try Self.object(request.body)
        #expect(object["event"] as? String == "rollout.failed" && object["id"] as? String == Self.event.id)
        #expect(object["time"] as? String == "2026-11-30T00:53:20Z" && object["cluster"] as? String == "prod-eu")
        #expect((object["details"] as? [String: String])?["cause"] == "agent-1 <unhealthy> & more")
        #expect(body.hasPrefix(#"{"cluster":"prod-eu","details":{"cause""#), "sorted keys, no whitespace: \(body)")
        #expect(Self.header(request, "Content-Type") == "application/json")
        #expect(Self.header(request, "X-Upkeep-Event") == "rollout.failed" && Self.header(request, "X-Upkeep-Delivery") == Self.event.id)
        let signature = Self.header(request, "X-Upkeep-Signature-256")
        #expect(try WebhookReceiver.opensslVerifies(signature, body: request.body, key: "s3cr3t-key-0123456789"), "\(signature ?? "none")")
        #expect(try !WebhookReceiver.opensslVerifies(signature, body: request.body, key: "another-key"), "it does judge")
        // The same stored event gives the same bytes and signature on every attempt.
        let again = NotificationFormat.request(try NotificationEvent.decode(body), body: body, to: sink)
        #expect(again.body == request.body && Self.header(again, "X-Upkeep-Signature-256") == signature)
        #expect(!"\(sink)".contains("/upkeep"), "the description leaves the path out: \(sink)")
    }

    @Test func slackEscapesItsControlCharactersAndMattermostTakesTheSameShapeVerbatim() throws {
        let directory = try TemporaryDirectory()
        let slack = NotificationFormat.request(Self.event, body: Self.event.json,
                                               to: try Self.sink(.slack, "https://hooks.slack.com/services/T0/B0/XXXX", in: directory))
        let text = try #require(try Self.object(slack.body)["text"] as? String)
        #expect(try Self.object(slack.body).count == 1, "only text")
        #expect(text.hasPrefix(":rotating_light: *Upkeep [prod-eu]: Rollout failed*\n"), "\(text)")
        #expect(text.contains("agent-1 &lt;unhealthy&gt; &amp; more") && !text.contains("<unhealthy>"), "\(text)")
        #expect(text.contains("\nrollout: r1") && text.contains("\ntarget: v1.31.4+k3s1"), "\(text)")
        let mattermost = NotificationFormat.request(Self.event, body: Self.event.json,
                                                    to: try Self.sink(.mattermost, "https://chat.example/hooks/abc", in: directory))
        let plain = try #require(try Self.object(mattermost.body)["text"] as? String)
        #expect(plain.contains("agent-1 <unhealthy> & more"), "\(plain)")
        #expect(Self.header(mattermost, "Content-Type") == "application/json")
    }

    @Test func teamsGetsAnAdaptiveCardInAMessageAttachment() throws {
        let directory = try TemporaryDirectory()
        let url = "https://prod-23.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=SECRET"
        let request = NotificationFormat.request(Self.event, body: Self.event.json, to: try Self.sink(.teams, url, in: directory))
        #expect(request.url.target.hasSuffix("sig=SECRET"), "the query is kept")
        let message = try Self.object(request.body)
        #expect(message["type"] as? String == "message")
        let attachments = try #require(message["attachments"] as? [[String: Any]])
        #expect(attachments.count == 1 && attachments[0]["contentType"] as? String == "application/vnd.microsoft.card.adaptive")
        #expect(attachments[0]["contentUrl"] is NSNull)
        let card = try #require(attachments[0]["content"] as? [String: Any])
        #expect(card["type"] as? String == "AdaptiveCard" && card["version"] as? String == "1.4")
        #expect(card["$schema"] as? String == "http://adaptivecards.io/schemas/adaptive-card.json")
        let body = try #require(card["body"] as? [[String: Any]])
        #expect(body.map { $0["type"] as? String } == ["TextBlock", "TextBlock", "FactSet"])
        #expect(body[0]["text"] as? String == "Upkeep [prod-eu]: Rollout failed" && body[0]["color"] as? String == "Attention")
        #expect(body[1]["text"] as? String == Self.event.summary)
        let facts = try #require(body[2]["facts"] as? [[String: String]])
        #expect(facts.map { $0["title"] ?? "" } == ["cause", "rollout", "target"] && facts[1]["value"] == "r1")
    }

    @Test func ntfyGetsPlainTextWithTitlePriorityTagsAndTheToken() throws {
        let directory = try TemporaryDirectory()
        var event = Self.event
        event.cluster = "prod-ü"
        let request = NotificationFormat.request(event, body: event.json,
                                                 to: try Self.sink(.ntfy, "https://ntfy.example/upkeep-alerts", token: "tk_abc123", in: directory))
        #expect(request.url.description == "https://ntfy.example/upkeep-alerts")
        #expect(String(decoding: request.body, as: UTF8.self).hasPrefix(Self.event.summary + "\n"))
        #expect(Self.header(request, "Title") == "Upkeep [prod-?]: Rollout failed", "header values stay printable ASCII")
        #expect(Self.header(request, "Priority") == "5" && Self.header(request, "Tags") == "rotating_light,upkeep,rollout.failed")
        #expect(Self.header(request, "Authorization") == "Bearer tk_abc123")
        #expect(Self.header(request, "Content-Type") == "text/plain; charset=utf-8")
        let anonymous = NotificationFormat.request(event, body: event.json, to: try Self.sink(.ntfy, "https://ntfy.sh/topic", in: directory))
        #expect(Self.header(anonymous, "Authorization") == nil)
    }

    @Test func gotifyPostsToMessageWithTheTokenInAHeaderNotTheURL() throws {
        let directory = try TemporaryDirectory()
        let request = NotificationFormat.request(Self.event, body: Self.event.json,
                                                 to: try Self.sink(.gotify, "https://gotify.example/", token: "AbCdEf.123", in: directory))
        #expect(request.url.description == "https://gotify.example/message" && !request.url.target.contains("token"))
        #expect(Self.header(request, "X-Gotify-Key") == "AbCdEf.123")
        let object = try Self.object(request.body)
        #expect(object["title"] as? String == "Upkeep [prod-eu]: Rollout failed" && object["priority"] as? Int == 8)
        #expect((object["message"] as? String)?.hasPrefix(Self.event.summary) == true)
        let explicit = NotificationFormat.request(Self.event, body: Self.event.json,
                                                  to: try Self.sink(.gotify, "https://gotify.example/message", token: "t", in: directory))
        #expect(explicit.url.path == "/message")
    }
}
