import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepNotify
import UpkeepStore
import UpkeepPKI
import UpkeepProtocol
import UpkeepPOSIX
import UpkeepTLS

/// `upkeep serve`: the controller as a service. Serves `/metrics` (computed from the state
/// database at each scrape) and `/healthz` until SIGTERM or SIGINT, delivers the notification
/// outbox (whoever emitted), checks certificate expiries hourly, and with `automation:` in
/// upkeep.yaml runs the controller loop (docs/serve.md).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as a service: the controller loop (automation: in upkeep.yaml), Prometheus metrics on /metrics, a liveness check on /healthz, and notifications.",
        discussion: "With automation: in upkeep.yaml it checks for k3s updates every automation.checkInterval and, as automation.k3s allows, "
            + "rolls them out inside the maintenance windows exactly as `upkeep apply` would, and carries on an unfinished rollout after a restart "
            + "(docs/serve.md). Bind to loopback or a management network; the metrics carry no secrets but say what the cluster runs. "
            + "With notifications: in upkeep.yaml it delivers what any command left in the outbox and checks certificate expiries hourly "
            + "(docs/notifications.md). Stops on SIGTERM or SIGINT. deploy/upkeep.service runs it under systemd."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Address and port to listen on.", valueName: "HOST:PORT"))
    var listen = "127.0.0.1:9661"

    /// GET only, small heads and no bodies: a head within 10 s (of accept, or of its first
    /// byte on a kept connection), an answer within 30 s, 30 s idle between requests; 64
    /// connections served at once and 2 more for `/healthz` alone; at most 64 connections that
    /// have not sent a request yet (8 from one address), the oldest closed for a new one
    /// (docs/serve.md, "Slow and idle clients").
    public static let serverConfiguration = HTTPServer.Configuration(
        headerBytesMax: 8 << 10, bodyBytesMax: 4 << 10, headerReadTimeoutSeconds: 10, requestTimeoutSeconds: 30, idleTimeoutSeconds: 30,
        connectionsMax: 64, reservedConnections: 2, reservedPaths: ["/healthz"], awaitingRequestMax: 64, awaitingRequestPerSourceMax: 8,
        backlog: 64)

    /// How often `serve` looks for certificates close to their end (certificate.expiring).
    static let certificateCheckSeconds: UInt64 = 3600
    /// How long a stop waits for the controller loop (a rollout's step in flight) before it
    /// goes anyway: the rollout is in the state database, and the next start carries it on.
    static let loopStopSecondsMax: UInt64 = 10

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)  // a wrong state directory fails now, not at the first scrape
        let deliverer = try NotificationRun.deliverer(config, store: store)
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--listen \(listen): write HOST:PORT, e.g. 127.0.0.1:9661")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let board = config.automation.map(ServeBoard.init)
        let api = StatusAPI(config: config, store: store, board: board)
        let tls = try StatusAPI.security(config, host: host)
        let server: HTTPServer
        do {
            server = try await Self.listen(host: host, port: port, tls: tls, config: config, api: api, board: board)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot listen on \(listen): \(error)")
        }
        let scheme = tls == nil ? "http" : "https"
        FileHandle.standardOutput.write(Data(("serving metrics on \(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(server.port)/metrics"
                                              + (tls == nil ? "" : " (mutual TLS: operator certificates of the cluster CA)") + "\n").utf8))
        await deliverer?.start()
        let expiries = deliverer == nil ? nil : Task {
            while !Task.isCancelled {
                CertificateExpiryNotice.check(config: config, store: store)
                do { try await Task.sleep(nanoseconds: Self.certificateCheckSeconds * 1_000_000_000) } catch { return }
            }
        }
        let loop: Task<Void, Never>? = if let policy = config.automation, let board {
            Task { await ControllerLoop(config: config, policy: policy, store: store, board: board).run() }
        } else {
            nil
        }
        _ = await Signals.wait(for: [SIGTERM, SIGINT])
        expiries?.cancel()
        if let loop { await Self.stop(loop) }
        // Undelivered notifications stay in the outbox for the next start; a request in flight
        // is sent again then (same id).
        await deliverer?.stop()
        await server.close()
    }

    /// Serve's listener: `/metrics` (with the server's own bounds reached), `/healthz` and the
    /// status API, within `configuration`'s bounds (tests shorten its times).
    static func listen(host: String, port: Int, configuration: HTTPServer.Configuration = serverConfiguration, tls: TLSContext?,
                       config: ControllerConfig, api: StatusAPI, board: ServeBoard?) async throws -> HTTPServer
    {
        let served = NIOLockedValueBox<HTTPServer?>(nil)
        // Each answer reads the state database: off the event loop.
        let server = try await HTTPServer.start(host: host, port: port, configuration: configuration, tls: tls, peers: .roles([.operator]),
                                                responder: .async { request in
            await Self.answer(request, api: api) {
                let limits = ServeLimits(server: served.withLockedValue { $0?.limits.counts } ?? [], httpClients: HTTPClient.processLimits.counts,
                                         agentClients: ProtocolClient.limits.counts, insecureReleaseUses: ReleaseTransport.insecureUses.counts,
                                         artifactRefusals: ArtifactCache.refusals.counts)
                return try MetricsSource.exposition(config, limits: limits) + (board?.exposition() ?? "")
            }
        })
        served.withLockedValue { $0 = server }
        return server
    }

    /// Cancels the loop and waits for it at most `loopStopSecondsMax`.
    static func stop(_ loop: Task<Void, Never>) async {
        loop.cancel()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await loop.value }
            group.addTask { try? await Task.sleep(nanoseconds: loopStopSecondsMax * 1_000_000_000) }
            await group.next()
            group.cancelAll()
        }
    }

    /// `/metrics`, `/healthz` and the status API under `/v1/`, GET or HEAD; anything else is 404 or 405.
    static func answer(_ request: HTTPServerRequest, api: StatusAPI, metrics: () throws -> String) async -> HTTPServerResponse {
        let usage = "GET /metrics, /healthz, /v1/status, /v1/rollouts or /v1/rollouts/ID\n"
        guard request.method == "GET" || request.method == "HEAD" else { return .text(usage, status: 405) }
        switch request.path {
        case "/healthz":
            return .text("ok\n")
        case "/metrics":
            do {
                return HTTPServerResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(try metrics().utf8))
            } catch {
                return .text("\(error)\n", status: 500)
            }
        default:
            return await api.answer(path: request.path, query: request.query) ?? .text(usage, status: 404)
        }
    }
}
