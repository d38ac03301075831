import Foundation
import UpkeepFleet
import UpkeepProtocol

/// `upkeep-fleet-bench install …`: one install request to a running `upkeep-agent run` over real
/// mutual TLS, as the controller sends it, timed from the request leaving to the answer (the
/// connection and Hello are set up and warmed first with a status request, as a controller's
/// connection already is). Prints `install_ms=… outcome=…`.
enum InstallBench {
    static func value(_ name: String) -> String? {
        let arguments = CommandLine.arguments
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    static func run() async throws {
        guard let ca = value("--ca"), let certificate = value("--cert"), let key = value("--key"), let port = value("--port").flatMap(Int.init),
              let node = value("--node"), let sha = value("--sha256").flatMap(SHA256Hex.init(rawValue:)), let version = value("--k3s-version"),
              let id = value("--operation-id").flatMap(OperationID.init(rawValue:)) else {
            fatalError("usage: upkeep-fleet-bench install --ca F --cert F --key F --port P --node N --sha256 X --k3s-version V --operation-id ID")
        }
        let fleet = AgentFleet(security: try FleetSecurity.load(caFile: ca, certificateFile: certificate, keyFile: key),
                               endpoints: [node: AgentEndpoint(host: "127.0.0.1", port: port)])
        let client = try await fleet.client(for: node)
        _ = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await client.call(InstallRequest(operationID: id, sha256: sha, k3sVersion: version, healthTimeoutSeconds: 60,
                                                          watchdogTimeoutSeconds: 600), deadline: .now + .seconds(90))
        let elapsed = clock.now - started
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        print(String(format: "install_ms=%.1f outcome=%@", ms, result.outcome.rawValue))
        await fleet.close()
    }
}
