import NIOHTTP1
import UpkeepHTTP

/// One event of a Kubernetes watch
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
public struct KubeWatchEvent: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK", error = "ERROR"
    }

    public var kind: Kind
    /// The object (a deleted one's last state); for BOOKMARK only its `resourceVersion`; for
    /// ERROR a `Status`.
    public var object: JSON

    public init(kind: Kind, object: JSON) {
        self.kind = kind
        self.object = object
    }

    public var resourceVersion: String? { object[path: "metadata", "resourceVersion"]?.string }
}

/// The bounds of one watch request.
public struct KubeWatchBounds: Sendable, Equatable {
    /// What the server is asked for (`timeoutSeconds`); the client cuts the answer 15 s after.
    public var timeoutSeconds: Int
    /// Pieces of the answer waiting for the reader; more cut the watch (`stream_backlog`).
    public var piecesMax: Int
    /// One event's line; a longer one fails the watch as an invalid answer.
    public var lineBytesMax: Int

    public init(timeoutSeconds: Int = 300, piecesMax: Int = 1_024, lineBytesMax: Int = 16 << 20) {
        self.timeoutSeconds = max(1, timeoutSeconds)
        self.piecesMax = max(1, piecesMax)
        self.lineBytesMax = max(1_024, lineBytesMax)
    }
}

extension KubeClient {
    /// Watches `type` from `resourceVersion` (after it; nil: every object first, as ADDED): the
    /// events as the server sends them, ending when the server ends the watch (its
    /// `timeoutSeconds`). A refusal (say 410 Gone, or 429) throws `KubeAPIError`; a 410 may also
    /// arrive as an ERROR event, which the caller must handle by listing again.
    public func watch(_ type: ResourceType, namespace: String? = nil, resourceVersion: String?, labelSelector: LabelSelector? = nil,
                      fieldSelector: FieldSelector? = nil, bounds: KubeWatchBounds = KubeWatchBounds()) async throws
        -> AsyncThrowingStream<KubeWatchEvent, any Error>
    {
        var query: [(String, String)] = [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(bounds.timeoutSeconds))]
        if let resourceVersion, !resourceVersion.isEmpty { query.append(("resourceVersion", resourceVersion)) }
        if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector.description)) }
        if let fieldSelector, !fieldSelector.terms.isEmpty { query.append(("fieldSelector", fieldSelector.description)) }
        let url = endpoint.server.url.appending(path: type.collectionPath(namespace: namespace)).appending(query: query)
        var headers = HTTPHeaders([("Accept", "application/json")])
        if let token = endpoint.bearerToken { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let answer = try await http.stream(HTTPRequest(method: .GET, url: url, headers: headers, timeoutSeconds: Double(bounds.timeoutSeconds) + 15),
                                           piecesMax: bounds.piecesMax)
        guard answer.status == 200 else {
            var body: [UInt8] = []
            do {
                for try await piece in answer.body where body.count < 64 << 10 { body += piece }
            } catch {}
            answer.close()
            throw KubeAPIError(code: answer.status, body: body)
        }
        let lineBytesMax = bounds.lineBytesMax
        return AsyncThrowingStream { continuation in
            let reader = Task {
                var line = WatchLines(lineBytesMax: lineBytesMax)
                do {
                    for try await piece in answer.body {
                        for event in try line.feed(piece, url: url.description) { continuation.yield(event) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                reader.cancel()
                answer.close()
            }
        }
    }
}

/// Splits a watch's body into events, one JSON object per line.
struct WatchLines {
    let lineBytesMax: Int
    private var pending: [UInt8] = []

    init(lineBytesMax: Int) { self.lineBytesMax = lineBytesMax }

    mutating func feed(_ bytes: [UInt8], url: String) throws -> [KubeWatchEvent] {
        pending += bytes
        var events: [KubeWatchEvent] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[..<newline])
            pending.removeSubrange(...newline)
            guard !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) else { continue }
            let json: JSON
            do { json = try JSON.parse(bytes: line) } catch {
                throw HTTPClientError.invalidResponse(url: url, reason: "a watch event is not JSON: \(error)")
            }
            guard let type = json["type"]?.string, let kind = KubeWatchEvent.Kind(rawValue: type), let object = json["object"] else {
                throw HTTPClientError.invalidResponse(url: url, reason: "a watch event without a known type and an object")
            }
            events.append(KubeWatchEvent(kind: kind, object: object))
        }
        if pending.count > lineBytesMax {
            throw HTTPClientError.invalidResponse(url: url, reason: "a watch event longer than \(lineBytesMax) bytes")
        }
        return events
    }
}
