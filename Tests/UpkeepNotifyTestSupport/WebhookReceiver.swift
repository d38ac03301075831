import Foundation
import Logging
import Synchronization
import UpkeepHTTPServer
import UpkeepTestSupport

/// A notification endpoint for tests: the one HTTP server on 127.0.0.1, recording every request
/// whole and answering as scripted (a status, a JSON body, no answer at all, or a closed
/// connection), so the deliverer is tested over real sockets as a webhook, Slack, Teams, ntfy or
/// Gotify sees it. With a JSON answer it stands in for other HTTP APIs too (Prometheus's alerts).
public final class WebhookReceiver: Sendable {
    public enum Answer: Sendable, Equatable {
        case status(Int)
        /// This status with this JSON body.
        case json(status: Int, body: String)
        /// Read the request and never answer.
        case hang
        /// Close the connection without answering.
        case close
    }

    public struct Received: Sendable {
        public var method: String
        public var path: String
        public var uri: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0 == name.lowercased() }?.1
        }

        public var text: String { String(decoding: body, as: UTF8.self) }

        /// The body as a JSON object.
        public var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }
    }

    private struct State {
        var received: [Received] = []
        var script: [Answer] = []
        var then: Answer
    }

    /// What the responder and the test share.
    private final class Shared: Sendable {
        let state: Mutex<State>
        init(_ state: State) { self.state = Mutex(state) }
    }

    private let shared: Shared
    private let server: Mutex<HTTPServer?>
    public let port: Int

    private init(shared: Shared, server: HTTPServer) {
        self.shared = shared
        self.server = Mutex(server)
        port = server.port
    }

    /// Listens on 127.0.0.1 (`port` 0: any free port); answers the first requests by `script`,
    /// then every one with `then`.
    public static func start(script: [Answer] = [], then: Answer = .status(200), port: Int = 0) async throws -> WebhookReceiver {
        let shared = Shared(State(script: script, then: then))
        let quiet = Logger(label: "test.receiver", factory: { _ in SwiftLogNoOpLogHandler() })
        let server = try await HTTPServer.start(host: "127.0.0.1", port: port,
                                                configuration: HTTPServer.Configuration(requestTimeoutSeconds: 600, idleTimeoutSeconds: 600),
                                                logger: quiet, responder: .nonBlocking { request in
            let answer = shared.state.withLock { state in
                state.received.append(Received(method: request.method, path: request.path, uri: request.uri, headers: request.headers,
                                               body: request.body))
                return state.script.isEmpty ? state.then : state.script.removeFirst()
            }
            switch answer {
            case .status(let status): return .text(status == 200 ? "ok" : "HTTP \(status) from the test receiver", status: status)
            case .json(let status, let body): return HTTPServerResponse(status: status, body: Array(body.utf8))
            case .hang: return .withheld
            case .close: return .closedWithoutAnswer
            }
        })
        return WebhookReceiver(shared: shared, server: server)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    public func url(_ path: String = "/hook") -> String { "http://127.0.0.1:\(port)\(path)" }

    public var received: [Received] { shared.state.withLock { $0.received } }

    /// Answers from now on.
    public func answer(_ script: [Answer] = [], then: Answer) {
        shared.state.withLock {
            $0.script = script
            $0.then = then
        }
    }

    /// The requests once at least `count` arrived, or those there are after `timeoutSeconds`.
    public func wait(for count: Int, timeoutSeconds: Double = 60) async -> [Received] {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let now = received
            if now.count >= count { return now }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return received
    }

    /// Stops listening and closes every connection (a hung request's client sees it closed).
    public func close() async {
        let running = server.withLock { server -> HTTPServer? in
            defer { server = nil }
            return server
        }
        await running?.close()
    }

    /// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `key`, as
    /// `openssl dgst -sha256 -hmac KEY` computes it on the bytes received: the receiver's check.
    public static func opensslVerifies(_ header: String?, body: [UInt8], key: String) throws -> Bool {
        guard let header, header.hasPrefix("sha256=") else { return false }
        let directory = try TemporaryDirectory()
        let path = directory.file("body")
        guard FileManager.default.createFile(atPath: path, contents: Data(body)) else { return false }
        let result = try openssl(["dgst", "-sha256", "-hmac", key, "-r", path])
        guard result.status == 0 else { return false }
        return String(result.output.prefix { $0 != " " }) == header.dropFirst("sha256=".count)
    }
}
