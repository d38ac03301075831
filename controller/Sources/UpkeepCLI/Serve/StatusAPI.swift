import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepStore
import UpkeepTLS

/// `upkeep serve`'s read-only JSON API beside `/metrics` (docs/serve.md, "Status API"):
/// `/v1/status` (the loop's state and `upkeep status -o json`'s document), `/v1/rollouts`
/// (`upkeep history -o json`) and `/v1/rollouts/ID` (`upkeep history ID -o json`). It only
/// reads the state database; nothing here changes anything.
struct StatusAPI: Sendable {
    let config: ControllerConfig
    let store: StateStore
    let board: ServeBoard?

    /// `/v1/rollouts` lists this many unless `?limit=N` (at most `listMax`) says otherwise.
    static let listDefault = 50
    static let listMax = 500

    /// `/v1/status`'s body.
    struct Body: Codable {
        /// The controller loop; nil without `automation:`.
        var serve: ServeBoard.State?
        var status: Status.Report
    }

    /// The answer to a GET under `/v1/`; nil for a path that is not the API's.
    func answer(path: String, query: [String: String]) async -> HTTPServerResponse? {
        guard path == "/v1" || path.hasPrefix("/v1/") else { return nil }
        do {
            switch path {
            case "/v1/status":
                return Self.json(try jsonText(Body(serve: board?.current, status: try await Status.report(config, store: store))))
            case "/v1/rollouts":
                guard let limit = Self.limit(query) else {
                    return .text("limit must be a whole number from 1 to \(Self.listMax)\n", status: 400)
                }
                return Self.json(try jsonText(try store.history(limit: limit)))
            default:
                let prefix = "/v1/rollouts/"
                guard path.hasPrefix(prefix), path.count > prefix.count else {
                    return .text("GET /v1/status, /v1/rollouts or /v1/rollouts/ID\n", status: 404)
                }
                let id = String(path.dropFirst(prefix.count))
                do {
                    return Self.json(try jsonText(try store.rollout(id: id)))
                } catch StoreError.unknownRollout {
                    return .text("no rollout \(id.prefix(80)) (GET /v1/rollouts lists them)\n", status: 404)
                }
            }
        } catch {
            return .text("\(error)\n", status: 500)
        }
    }

    /// `limit=N` of the query, the default without one, nil when it is not 1 ... listMax.
    static func limit(_ query: [String: String]) -> Int? {
        guard let text = query["limit"] else { return listDefault }
        guard let value = Int(text), (1...listMax).contains(value) else { return nil }
        return value
    }

    static func json(_ text: String) -> HTTPServerResponse {
        HTTPServerResponse(status: 200, contentType: "application/json", body: Array(text.utf8))
    }

    // MARK: - Who may read it

    /// Whether `host` (as `--listen` gives it) binds loopback only: 127.0.0.0/8, ::1, localhost.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Beyond loopback: TLS 1.3 with the controller's certificate, a client certificate from the
    /// cluster CA required, not on the deny list, of role `operator` (checked by the handler).
    /// Loopback: nil, plain HTTP.
    static func security(_ config: ControllerConfig, host: String) throws -> TLSContext? {
        guard !isLoopback(host) else { return nil }
        do {
            return try FleetSecurity.load(caFile: config.pki.ca, certificateFile: config.pki.certificate, keyFile: config.pki.key,
                                          deniedFile: config.pki.revokedFile).context
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "pki: \(error); listening on \(host), beyond loopback, serve requires mutual TLS with the controller's "
                                     + "certificate (`upkeep pki issue controller`, pki in upkeep.yaml), or listen on 127.0.0.1")
        }
    }
}
