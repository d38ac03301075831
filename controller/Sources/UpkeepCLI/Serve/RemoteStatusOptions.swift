import ArgumentParser
import Foundation
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// `upkeep status --server URL`: the status from `upkeep serve`'s `/v1/status` instead of the
/// local state database; over https with an operator certificate (docs/serve.md).
struct RemoteStatusOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Read the status from `upkeep serve` at this URL: http://127.0.0.1:9661, or https://HOST:9661 with --cert and --key.",
                                            valueName: "URL"))
    var server: String?

    @Option(name: .customLong("ca"), help: ArgumentHelp("With https: the cluster CA (default: pki.ca of upkeep.yaml).", valueName: "PATH"))
    var caFile: String?

    @Option(name: .long, help: ArgumentHelp("With https: an operator certificate (`upkeep pki issue operator NAME`).", valueName: "PATH"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("With https: its key (mode 0600).", valueName: "PATH"))
    var key: String?

    /// Each answer within this; a server that says nothing is an error, not a hang.
    static let timeoutSeconds = 10.0

    /// `/v1/status` of `server`, decoded.
    func fetch(_ config: ControllerConfig) async throws -> StatusAPI.Body {
        guard let server else { preconditionFailure("fetch without --server") }
        let url: HTTPURL
        do { url = try HTTPURL((server.hasSuffix("/") ? String(server.dropLast()) : server) + "/v1/status") } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--server \(server): \(error); write http://HOST:PORT or https://HOST:PORT")
        }
        let client = try makeClient(config, https: url.scheme == .https)
        let response: HTTPResponse
        do {
            response = try await client.send(HTTPRequest(url: url, timeoutSeconds: Self.timeoutSeconds))
            await client.shutdown()
        } catch {
            await client.shutdown()
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read \(url): \(error)")
        }
        guard response.status == 200 else {
            throw CommandFailure(code: RolloutExitCode.unreachable,
                                 message: "\(url) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
        }
        do {
            return try JSONDecoder().decode(StatusAPI.Body.self, from: Data(response.body))
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "\(url) did not answer with upkeep serve's status: \(error)")
        }
    }

    /// Plain http (loopback); https with the operator's certificate, the server required to be a
    /// controller of the cluster CA (an Upkeep identity, not a host name).
    private func makeClient(_ config: ControllerConfig, https: Bool) throws -> HTTPClient {
        let configuration = HTTPClient.Configuration(responseTimeoutSeconds: Self.timeoutSeconds, responseBytesMax: 16 << 20, retry: .never,
                                                     userAgent: "upkeep-status/0.1")
        guard https else { return HTTPClient(configuration: configuration, tls: nil) }
        guard let cert, let key else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--server https://…: give --cert and --key of an operator certificate "
                                     + "(`upkeep pki issue operator NAME`)")
        }
        do {
            let own = try OwnIdentity.load(caFile: caFile ?? config.pki.ca, certificateFile: cert, keyFile: key, role: .operator, now: Date())
            let tls = try TLSContext.publicClient(trust: .certificates(own.ca), clientChain: own.chain, clientKey: own.key)
            return HTTPClient(configuration: configuration, tls: tls, tlsPeer: .roles([.controller]))
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--cert/--key: \(error)")
        }
    }

    /// `serve: waiting until …: reason` above the status table.
    static func line(_ state: ServeBoard.State) -> String {
        // The Git updates it may start; those left at `none` go unsaid.
        let updates = state.updatePolicies.filter { !$0.contains(": none") }
        var text = "serve: \(([state.policy] + updates).joined(separator: ", ")); \(state.decision)"
        if let detail = state.detail { text += ": \(detail)" }
        if let until = state.until { text += " (until \(until))" }
        if let driving = state.driving { text += "; driving \(driving)" }
        return text + "\n"
    }
}
