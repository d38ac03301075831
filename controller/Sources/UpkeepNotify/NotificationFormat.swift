import Foundation
import UpkeepHTTP
import UpkeepPKI
import UpkeepStore

/// The request one notification becomes for one sink: pure, so every format is tested without
/// a socket, and the same stored event always gives the same bytes (the webhook's signature is
/// over exactly the body sent). docs/notifications.md shows each shape.
public struct SinkRequest: Sendable {
    public var url: HTTPURL
    /// Name and value, in order; never logged (they carry tokens and signatures).
    public var headers: [(String, String)]
    public var body: [UInt8]
}

/// How bad an event is, for the formats that show it (ntfy's priority and tags, Gotify's
/// priority, the Teams card's colour, Slack's emoji).
enum Severity {
    case info, good, warning, bad
}

extension NotificationEventName {
    var severity: Severity {
        switch self {
        case .rolloutFinished: .good
        case .rolloutBlocked, .certificateExpiring, .maintenanceEnabled: .warning
        case .rolloutFailed, .rolloutRolledBack, .backupFailed: .bad
        case .updateAvailable, .rolloutStarted, .rolloutNodeDone, .maintenanceDisabled, .test: .info
        }
    }

    /// A few words for titles.
    var title: String {
        switch self {
        case .updateAvailable: "Update available"
        case .rolloutStarted: "Rollout started"
        case .rolloutNodeDone: "Node upgraded"
        case .rolloutBlocked: "Rollout blocked"
        case .rolloutFinished: "Rollout completed"
        case .rolloutFailed: "Rollout failed"
        case .rolloutRolledBack: "Rollout rolled back"
        case .maintenanceEnabled: "Maintenance mode on"
        case .maintenanceDisabled: "Maintenance mode off"
        case .backupFailed: "Backup failed"
        case .certificateExpiring: "Certificate expiring"
        case .test: "Test notification"
        }
    }
}

public enum NotificationFormat {
    /// The generic webhook's signature header (docs/notifications.md, "Verifying a webhook").
    public static let signatureHeader = "X-Upkeep-Signature-256"

    /// The request for `event` (whose canonical JSON, as stored, is `body`) to `sink`.
    public static func request(_ event: NotificationEvent, body canonical: String, to sink: ResolvedSink) -> SinkRequest {
        let title = "Upkeep [\(event.cluster)]: \(event.event.title)"
        let facts = event.details.sorted { $0.key < $1.key }
        switch sink.sink.kind {
        case .webhook:
            let body = Array(canonical.utf8)
            var headers = [("Content-Type", "application/json"), ("X-Upkeep-Event", event.event.rawValue), ("X-Upkeep-Delivery", event.id)]
            if let secret = sink.secret {
                headers.append((signatureHeader, "sha256=" + HMACSHA256.hex(key: Array(secret.secretText.utf8), message: body)))
            }
            return SinkRequest(url: sink.url, headers: headers, body: body)

        case .slack, .mattermost:
            // Slack wants &, < and > escaped (https://api.slack.com/reference/surfaces/formatting#escaping);
            // Mattermost reads the text as Markdown and shows entities as they are.
            let slack = sink.sink.kind == .slack
            func escape(_ text: String) -> String { slack ? slackEscaped(text) : text }
            let emoji = switch event.event.severity {
            case .info: ":information_source:"
            case .good: ":white_check_mark:"
            case .warning: ":warning:"
            case .bad: ":rotating_light:"
            }
            var lines = ["\(emoji) *\(escape(title))*", escape(event.summary)]
            for (key, value) in facts { lines.append("\(escape(key)): \(escape(value))") }
            return SinkRequest(url: sink.url, headers: [("Content-Type", "application/json")],
                               body: json(["text": lines.joined(separator: "\n")]))

        case .teams:
            // A Workflows webhook takes Adaptive Cards only, as a message with one attachment
            // (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).
            let colour = switch event.event.severity {
            case .info: "Default"
            case .good: "Good"
            case .warning: "Warning"
            case .bad: "Attention"
            }
            let card: [String: Any] = [
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    ["type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true],
                    ["type": "TextBlock", "text": event.summary, "wrap": true],
                    ["type": "FactSet", "facts": facts.map { ["title": $0.key, "value": $0.value] }],
                ],
            ]
            let message: [String: Any] = [
                "type": "message",
                "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": NSNull(), "content": card]],
            ]
            return SinkRequest(url: sink.url, headers: [("Content-Type", "application/json")], body: json(message))

        case .ntfy:
            // https://docs.ntfy.sh/publish/: the body is the message; headers carry the rest.
            let (priority, tag) = switch event.event.severity {
            case .info: ("3", "information_source")
            case .good: ("3", "white_check_mark")
            case .warning: ("4", "warning")
            case .bad: ("5", "rotating_light")
            }
            var headers = [("Content-Type", "text/plain; charset=utf-8"), ("Title", headerSafe(title)), ("Priority", priority),
                           ("Tags", "\(tag),upkeep,\(event.event.rawValue)")]
            if let token = sink.token { headers.append(("Authorization", token.authorizationHeader)) }
            let text = ([event.summary] + facts.map { "\($0.key): \($0.value)" }).joined(separator: "\n")
            return SinkRequest(url: sink.url, headers: headers, body: Array(text.utf8))

        case .gotify:
            // https://gotify.net/docs/pushmsg: POST /message with the application token in a
            // header (kept out of the URL, which logs may show).
            let url = sink.url.path.hasSuffix("/message") ? sink.url : sink.url.appending(path: "message")
            let priority = switch event.event.severity {
            case .info, .good: 4
            case .warning: 6
            case .bad: 8
            }
            var headers = [("Content-Type", "application/json")]
            if let token = sink.token { headers.append(("X-Gotify-Key", token.secretText)) }
            let message = ([event.summary] + facts.map { "\($0.key): \($0.value)" }).joined(separator: "\n")
            return SinkRequest(url: url, headers: headers, body: json(["title": title, "message": message, "priority": priority]))
        }
    }

    /// https://api.slack.com/reference/surfaces/formatting#escaping
    static func slackEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A header value of printable ASCII (others become `?`): a cluster name or a version in a
    /// title must not bend the header.
    static func headerSafe(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" })
    }

    /// Sorted keys, slashes as they are: the same value always gives the same bytes.
    static func json(_ object: Any) -> [UInt8] {
        do {
            return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        } catch {
            preconditionFailure("a notification body did not encode: \(error)")
        }
    }
}
