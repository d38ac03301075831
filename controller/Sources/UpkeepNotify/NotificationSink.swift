import UpkeepHTTP
import UpkeepPKI
import UpkeepStore
import UpkeepYAML

/// One entry of `notifications:` in upkeep.yaml as written (docs/notifications.md): where to
/// send, in which format, which events, and the names of the files holding its secrets. Reading
/// it checks everything that needs no file; `load()` reads the secret files (each must be 0600)
/// and makes the `ResolvedSink` the deliverer sends with.
///
/// It never holds a secret itself, and its description never shows a URL's path (a Slack or
/// Teams URL is a credential).
public struct NotificationSink: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        /// Generic JSON, signed with HMAC-SHA256.
        case webhook
        /// Slack incoming webhook, `{"text": …}`.
        case slack
        /// Mattermost incoming webhook, the same shape as Slack's.
        case mattermost
        /// Microsoft Teams through a Workflows webhook: an Adaptive Card.
        case teams
        /// ntfy: the text as the body, Title/Tags/Priority headers.
        case ntfy
        /// Gotify: `POST /message` JSON with the application token.
        case gotify
    }

    public var kind: Kind
    /// The sink's key in the outbox, metrics and `notify status`: `name:` when given, else the
    /// type and 8 hex digits of the URL's SHA-256 (stable when the list is reordered).
    public var key: String
    /// 1-based position in the list (`--sink N`).
    public var position: Int
    /// The URL, or nil when it is read from `urlFile`.
    public var url: String?
    /// A 0600 file holding the URL (Slack's and Teams' URLs are credentials).
    public var urlFile: String?
    /// The HMAC-SHA256 key of a webhook (required for `webhook`).
    public var secretFile: String?
    /// ntfy's access token (optional) or Gotify's application token (required).
    public var tokenFile: String?
    /// The events sent; nil: every event.
    public var events: Set<NotificationEventName>?
    /// Bound on one attempt, connection included.
    public var timeoutSeconds: Int
    /// Attempts per notification before it is given up.
    public var attemptsMax: Int
    /// Plain http:// to a host other than loopback (off: refused).
    public var allowHTTP: Bool
    /// Trust only these CAs (PEM) for this sink's https, instead of the system store.
    public var caFile: String?
    /// Where it was written, for errors found when its files are read.
    public var file: String?
    public var line: Int?

    public static let timeoutSecondsDefault = 10
    public static let attemptsMaxDefault = 12
    /// At most this many sinks.
    public static let countMax = 20

    public init(kind: Kind, key: String, position: Int, url: String?, urlFile: String? = nil, secretFile: String? = nil, tokenFile: String? = nil,
                events: Set<NotificationEventName>? = nil, timeoutSeconds: Int = NotificationSink.timeoutSecondsDefault,
                attemptsMax: Int = NotificationSink.attemptsMaxDefault, allowHTTP: Bool = false, caFile: String? = nil,
                file: String? = nil, line: Int? = nil) {
        self.kind = kind
        self.key = key
        self.position = position
        self.url = url
        self.urlFile = urlFile
        self.secretFile = secretFile
        self.tokenFile = tokenFile
        self.events = events
        self.timeoutSeconds = timeoutSeconds
        self.attemptsMax = attemptsMax
        self.allowHTTP = allowHTTP
        self.caFile = caFile
        self.file = file
        self.line = line
    }

    /// `notifications[2]`: how errors and `notify status` name it.
    public var field: String { "notifications[\(position)]" }

    /// `https://hooks.example:443/…`: the URL without its path, or where it is read from.
    public var redactedURL: String {
        guard let url, let parsed = try? HTTPURL(url) else { return "URL in \(urlFile ?? "?")" }
        return Self.redacted(parsed)
    }

    /// `webhook https://hooks.example:443/…`: the kind and the redacted URL.
    public var label: String { "\(kind.rawValue) \(redactedURL)" }

    /// A URL as logs and errors show it: scheme, host and port; the path (a token, a topic, a
    /// workflow signature) left out.
    public static func redacted(_ url: HTTPURL) -> String { "\(url.origin)/…" }

    /// The route the store writes rows by.
    public var route: NotificationRouting.Route { NotificationRouting.Route(sink: key, events: events) }

    /// Reads one entry of `notifications:` (its line and field named in every error); `path`
    /// resolves a relative file name against the configuration's directory.
    public static func parse(_ fields: ConfigFields, position: Int, path: (String) -> String) throws(ConfigError) -> NotificationSink {
        try fields.rejectUnknown(["type", "name", "url", "urlFile", "secretFile", "tokenFile", "events", "timeoutSeconds", "attemptsMax",
                                  "allowHTTP", "caFile"])
        guard let typeText = try fields.string("type") else {
            throw fields.error("type", "is required: one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let kind = Kind(rawValue: typeText) else {
            throw fields.error("type", "\"\(typeText)\" is not a sink type; use one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        func file(_ key: String) throws(ConfigError) -> String? {
            guard let text = try fields.string(key) else { return nil }
            guard !text.isEmpty else { throw fields.error(key, "must not be empty; leave the field out instead") }
            return path(text)
        }
        let url = try fields.string("url")
        let urlFile = try file("urlFile")
        switch (url, urlFile) {
        case (nil, nil): throw fields.error("url", "is required (or urlFile: a 0600 file holding the URL, for URLs that are credentials)")
        case (.some, .some): throw fields.error("urlFile", "give url or urlFile, not both")
        default: break
        }
        let allowHTTP = try fields.bool("allowHTTP") ?? false
        if let url {
            do { _ = try checkedURL(url, allowHTTP: allowHTTP) } catch { throw fields.error("url", error.problem) }
        }
        let secretFile = try file("secretFile")
        let tokenFile = try file("tokenFile")
        switch kind {
        case .webhook:
            guard secretFile != nil else {
                throw fields.error("secretFile", "is required for a webhook: a 0600 file with the HMAC-SHA256 key "
                                   + "(e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`), shared with the receiver")
            }
            if tokenFile != nil { throw fields.error("tokenFile", "is for ntfy and gotify; a webhook is signed with secretFile") }
        case .gotify:
            guard tokenFile != nil else { throw fields.error("tokenFile", "is required for gotify: a 0600 file with the application token") }
            if secretFile != nil { throw fields.error("secretFile", "is for webhooks only") }
        case .ntfy:
            if secretFile != nil { throw fields.error("secretFile", "is for webhooks only; ntfy takes an access token in tokenFile") }
        case .slack, .mattermost, .teams:
            if secretFile != nil || tokenFile != nil {
                throw fields.error(secretFile != nil ? "secretFile" : "tokenFile",
                                   "is not used by \(kind.rawValue): its URL is the credential (keep it in urlFile, mode 0600)")
            }
        }
        var events: Set<NotificationEventName>?
        if let names = try fields.strings("events", countMax: 50) {
            var chosen = Set<NotificationEventName>()
            for name in names {
                guard let event = NotificationEventName(rawValue: name), event != .test else {
                    throw fields.error("events", "\"\(name)\" is not an event; known: "
                                       + NotificationEventName.filterable.map(\.rawValue).joined(separator: ", "))
                }
                chosen.insert(event)
            }
            guard !chosen.isEmpty else { throw fields.error("events", "lists no event; leave it out for every event") }
            events = chosen
        }
        let name = try fields.string("name")
        if let name {
            guard (1...40).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                throw fields.error("name", "must be 1 to 40 letters, digits, '-', '_' or '.'; is \"\(name)\"")
            }
        }
        let key = name ?? "\(kind.rawValue)-\(SHA256.hex(Array((url ?? urlFile ?? "").utf8)).prefix(8))"
        return NotificationSink(kind: kind, key: key, position: position, url: url, urlFile: urlFile, secretFile: secretFile, tokenFile: tokenFile,
                                events: events, timeoutSeconds: try fields.int("timeoutSeconds", in: 1...120) ?? timeoutSecondsDefault,
                                attemptsMax: try fields.int("attemptsMax", in: 1...100) ?? attemptsMaxDefault, allowHTTP: allowHTTP,
                                caFile: try file("caFile"), file: fields.file, line: fields.line(of: "type"))
    }

    /// Checks a list of sinks together: keys must differ (two sinks to one URL need names).
    public static func checkUnique(_ sinks: [NotificationSink]) throws(ConfigError) {
        var seen: [String: NotificationSink] = [:]
        for sink in sinks {
            if let earlier = seen[sink.key] {
                throw ConfigError(file: sink.file, line: sink.line, field: sink.field,
                                  problem: "has the key \(sink.key) of \(earlier.field); give one of them another `name:`")
            }
            seen[sink.key] = sink
        }
    }

    struct URLProblem: Error {
        var problem: String
    }

    /// The URL, if it may be used: http(s), no credentials in it, and plain http only to a
    /// loopback host unless `allowHTTP` (events and signatures would cross the network readable).
    static func checkedURL(_ text: String, allowHTTP: Bool) throws(URLProblem) -> HTTPURL {
        let url: HTTPURL
        do { url = try HTTPURL(text) } catch { throw URLProblem(problem: "\(error)") }
        if url.scheme == .http, !allowHTTP, !isLoopback(url.host) {
            throw URLProblem(problem: "plain http:// to \(url.host) would send events (and a Slack or Teams URL's credential) readable over "
                             + "the network; use https://, or set allowHTTP: true for a trusted network")
        }
        return url
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
