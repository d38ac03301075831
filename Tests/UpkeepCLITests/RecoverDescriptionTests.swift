import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepRollout
import UpkeepStore

/// What `upkeep recover` shows before it asks for confirmation.
@Suite struct RecoverDescriptionTests {
    static let version = try! K3sVersion("v1.30.6+k3s1")
    static let record = BackupRecord(id: "b1", rolloutID: nil, takenAt: Instant(milliseconds: 1_795_000_000_000), node: "server-1",
                                     format: "etcdSnapshot", agentFile: "b1.db", path: "/nonexistent/b1.upkb", bytes: 2048, sha256: "00",
                                     k3sVersion: version)

    static func server(_ name: String) -> RecoveryNode { RecoveryNode(name: name, role: .server, arch: .amd64, version: try! K3sVersion("v1.31.2+k3s1")) }

    @Test func severalServersAreToldWhichRestoresAndWhichRejoin() {
        let text = Recover.describe(record: Self.record, version: Self.version, servers: ["server-1", "server-2", "server-3"].map(Self.server),
                                    agents: [Self.server("agent-1")].map { RecoveryNode(name: $0.name, role: .agent, arch: .arm64, version: $0.version) })
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[1] == "  server-1 restores it with k3s v1.30.6+k3s1; server-2, server-3 clear their datastore and rejoin", "\(text)")
        #expect(lines[2] == "  agents brought to v1.30.6+k3s1: agent-1 (v1.31.2+k3s1)", "\(text)")
        #expect(lines.allSatisfy { !$0.hasSuffix(" ") }, "a line ends with a space:\n\(text)")
    }

    @Test func aSingleServerIsNotToldOfOthers() {
        let text = Recover.describe(record: Self.record, version: Self.version, servers: [Self.server("server-1")], agents: [])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[1] == "  server-1 restores it with k3s v1.30.6+k3s1 (the only server)", "\(text)")
        #expect(lines[2] == "  agents brought to v1.30.6+k3s1: none", "\(text)")
        #expect(lines.allSatisfy { !$0.hasSuffix(" ") }, "a line ends with a space:\n\(text)")
    }
}
