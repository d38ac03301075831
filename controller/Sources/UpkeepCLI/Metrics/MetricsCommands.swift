import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import UpkeepCore
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepNotify
import UpkeepStore
import UpkeepUpdates
import UpkeepPOSIX

enum MetricsSource {
    static let version = Upkeep.configuration.version

    /// The exposition for the state directory of `config`; with `serverLimits`, those of the
    /// server answering the scrape too.
    static func exposition(_ config: ControllerConfig, serverLimits: [(limit: ServerLimit, count: Int)] = []) throws -> String {
        let store = try openStateStore(config)
        let checks = JSONLinesCheckHistory(stateDirectory: config.resolvedStateDirectory())
        var snapshot: MetricsSnapshot
        do {
            snapshot = try MetricsSnapshot.gather(store: store, checks: checks, now: .wallClockNow(), sinks: config.notifications.map(\.key))
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        snapshot.certificateExpiries = try certificateExpiries(config)
        return snapshot.exposition(version: version, serverLimits: serverLimits)
    }
}

extension MetricsSource {
    /// notAfter of every unrevoked certificate `pki status` lists, by identity; when two files
    /// hold the same identity (a copy beside upkeep.yaml), the earlier expiry counts.
    static func certificateExpiries(_ config: ControllerConfig) throws -> [String: Double] {
        var expiries: [String: Double] = [:]
        let inventory: PKIInventory
        do { inventory = try PKIInventory.read(directory: nil, config: config) } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "pki: \(error)")
        }
        for entry in inventory.entries where !entry.revoked {
            guard let notAfter = entry.notAfter?.timeIntervalSince1970 else { continue }
            expiries[entry.identity] = min(expiries[entry.identity] ?? notAfter, notAfter)
        }
        return expiries
    }
}

/// `upkeep metrics`: the Prometheus exposition once, for node_exporter's textfile collector.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Upkeep's Prometheus metrics once (rollouts, node upgrades, backups, the last check), or write them to a file.",
        discussion: "For node_exporter's textfile collector: `upkeep metrics --output /var/lib/node_exporter/textfile/upkeep.prom` from a timer. "
            + "`upkeep serve` serves the same over HTTP. docs/metrics.md lists the metrics."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file (atomically, mode 0644) instead of standard output.", valueName: "PATH"))
    var output: String?

    func run() throws {
        let text = try MetricsSource.exposition(try configOption.load())
        guard let output else {
            print(text, terminator: "")
            return
        }
        try writeReplacing(output, with: text)
    }
}

/// `upkeep serve`: the controller as a service. Serves `/metrics` (computed from the state
/// database at each scrape) and `/healthz` until SIGTERM or SIGINT, and delivers the
/// notification outbox (whoever emitted), checking certificate expiries hourly.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as a service: serve Prometheus metrics on /metrics and a liveness check on /healthz, and deliver notifications.",
        discussion: "Bind to loopback or a management network; the metrics carry no secrets but say what the cluster runs. "
            + "With notifications: in upkeep.yaml it delivers what any command left in the outbox and checks certificate expiries hourly "
            + "(docs/notifications.md). Stops on SIGTERM or SIGINT. deploy/upkeep.service runs it under systemd."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Address and port to listen on.", valueName: "HOST:PORT"))
    var listen = "127.0.0.1:9661"

    /// GET only, small heads and no bodies; at most 64 connections, each closed after 30 s
    /// without a request, and 2 more kept for `/healthz` when those are taken (docs/metrics.md).
    static let serverConfiguration = HTTPServer.Configuration(headerBytesMax: 8 << 10, bodyBytesMax: 4 << 10, idleTimeoutSeconds: 30,
                                                              connectionsMax: 64, reservedConnections: 2, reservedPaths: ["/healthz"],
                                                              backlog: 64)

    /// How often `serve` looks for certificates close to their end (certificate.expiring).
    static let certificateCheckSeconds: UInt64 = 3600

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)  // a wrong state directory fails now, not at the first scrape
        let deliverer = try NotificationRun.deliverer(config, store: store)
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--listen \(listen): write HOST:PORT, e.g. 127.0.0.1:9661")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let served = NIOLockedValueBox<HTTPServer?>(nil)
        let server: HTTPServer
        do {
            // Blocking: each scrape reads the state database.
            server = try await HTTPServer.start(host: host, port: port, configuration: Self.serverConfiguration, responder: .blocking { request in
                Self.answer(request) { try MetricsSource.exposition(config, serverLimits: served.withLockedValue { $0?.limits.counts } ?? []) }
            })
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot listen on \(listen): \(error)")
        }
        served.withLockedValue { $0 = server }
        FileHandle.standardOutput.write(Data("serving metrics on http://\(host.contains(":") ? "[\(host)]" : host):\(server.port)/metrics\n".utf8))
        await deliverer?.start()
        let expiries = deliverer == nil ? nil : Task {
            while !Task.isCancelled {
                CertificateExpiryNotice.check(config: config, store: store)
                do { try await Task.sleep(nanoseconds: Self.certificateCheckSeconds * 1_000_000_000) } catch { return }
            }
        }
        _ = await Signals.wait(for: [SIGTERM, SIGINT])
        expiries?.cancel()
        // Undelivered notifications stay in the outbox for the next start; a request in flight
        // is sent again then (same id).
        await deliverer?.stop()
        await server.close()
    }

    /// `/metrics` and `/healthz`, GET or HEAD; anything else is 404 or 405.
    static func answer(_ request: HTTPServerRequest, metrics: () throws -> String) -> HTTPServerResponse {
        guard request.method == "GET" || request.method == "HEAD" else { return .text("GET /metrics or /healthz\n", status: 405) }
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
            return .text("GET /metrics or /healthz\n", status: 404)
        }
    }
}
