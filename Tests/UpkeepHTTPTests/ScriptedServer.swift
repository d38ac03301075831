import NIOConcurrencyHelpers
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepTLS

/// The one `HTTPServer` on 127.0.0.1, its answers scripted request by request: respond, never
/// answer, or close the connection. It records every request and the connection it came on.
final class ScriptedServer: Sendable {
    enum Action: Sendable {
        case respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
        /// Read the request and never answer.
        case hang
        /// Close the connection without answering.
        case close
    }

    struct Received: Sendable {
        var method: String
        var uri: String
        var headers: [(String, String)]
        var connection: Int
        var atSeconds: Double

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    typealias Script = @Sendable (_ request: Received, _ index: Int) -> Action

    private let server: HTTPServer
    private let received: NIOLockedValueBox<[Received]>

    var port: Int { server.port }
    var requests: [Received] { received.withLockedValue { $0 } }
    var connections: Int { server.acceptedConnections }
    var url: String { "http://127.0.0.1:\(port)" }

    init(tls: TLSContext? = nil, script: @escaping Script) async throws {
        let received = NIOLockedValueBox<[Received]>([])
        self.received = received
        server = try await HTTPServer.start(host: "127.0.0.1", port: 0, tls: tls, responder: .nonBlocking { request in
            let entry = Received(method: request.method, uri: request.uri, headers: request.headers, connection: request.connection,
                                 atSeconds: HTTPClock.system.now())
            let index = received.withLockedValue { value -> Int in
                value.append(entry)
                return value.count - 1
            }
            switch script(entry, index) {
            case .hang:
                return .withheld
            case .close:
                return .closedWithoutAnswer
            case let .respond(status, headers, body):
                return HTTPServerResponse(status: status, contentType: "", body: body, headers: headers)
            }
        })
    }

    func close() async {
        await server.close()
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
