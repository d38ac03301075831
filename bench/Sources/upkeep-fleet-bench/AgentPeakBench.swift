import Foundation
import NIOCore
import UpkeepFleet
import UpkeepProtocol

/// `upkeep-fleet-bench stage …` and `upkeep-fleet-bench backup …` (bench/agent-peak): what the
/// controller asks of an agent while the bench reads the agent's peak memory. Both go to a running
/// `upkeep-agent run` over real mutual TLS, as a rollout sends them:
///   stage  streams a file as a k3s binary (256 KiB reads, as `ProtocolAgentTransport` does) and
///          prints `stage_ms=… bytes=… staged=true|false`;
///   backup asks for a datastore backup and seals the download into a vault, as `BackupTaker`
///          does for every rollout, and prints `backup_ms=… bytes=…`.
enum AgentPeakBench {
    static func value(_ name: String) -> String? {
        let arguments = CommandLine.arguments
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    static func fleet(_ usage: String) throws -> (AgentFleet, String) {
        guard let ca = value("--ca"), let certificate = value("--cert"), let key = value("--key"), let port = value("--port").flatMap(Int.init),
              let node = value("--node") else { fatalError(usage) }
        let fleet = AgentFleet(security: try FleetSecurity.load(caFile: ca, certificateFile: certificate, keyFile: key),
                               endpoints: [node: AgentEndpoint(host: "127.0.0.1", port: port)])
        return (fleet, node)
    }

    static func milliseconds(_ elapsed: Duration) -> Double {
        Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    static func stage() async throws {
        let usage = "usage: upkeep-fleet-bench stage --ca F --cert F --key F --port P --node N --file F --sha256 X --k3s-version V --operation-id ID"
        let (fleet, node) = try fleet(usage)
        guard let path = value("--file"), let sha = value("--sha256").flatMap(SHA256Hex.init(rawValue:)), let version = value("--k3s-version"),
              let id = value("--operation-id").flatMap(OperationID.init(rawValue:)),
              let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value else { fatalError(usage) }
        let client = try await fleet.client(for: node)
        _ = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
        let source = ProtocolAgentTransport.fileSource(path: path, unopened: CocoaError(.fileNoSuchFile))
        let started = ContinuousClock.now
        let result = try await client.call(StageRequest(operationID: id, k3sVersion: version, sha256: sha, bytes: bytes),
                                           upload: source, deadline: .now + .seconds(600))
        let staged = result.sha256 == sha && result.bytes == bytes
        print(String(format: "stage_ms=%.1f bytes=%lld staged=%@", milliseconds(ContinuousClock.now - started), bytes, staged ? "true" : "false"))
        await fleet.close()
    }

    static func backup() async throws {
        let usage = "usage: upkeep-fleet-bench backup --ca F --cert F --key F --port P --node N --vault DIR --vault-key F --id ID"
        let (fleet, node) = try fleet(usage)
        guard let directory = value("--vault"), let keyFile = value("--vault-key"), let id = value("--id") else { fatalError(usage) }
        let client = try await fleet.client(for: node)
        _ = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
        let started = ContinuousClock.now
        let taken = try await BackupTaker(fleet: fleet, vault: BackupVault(directory: directory, keyFile: keyFile), timeoutSeconds: 600)
            .take(id: id, from: node, now: { 0 })
        print(String(format: "backup_ms=%.1f bytes=%lld", milliseconds(ContinuousClock.now - started), taken.bytes))
        await fleet.close()
    }
}
