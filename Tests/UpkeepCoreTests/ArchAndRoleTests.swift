import Foundation
import Testing
import UpkeepCore

@Suite struct ArchTests {
    @Test(arguments: [
        (Arch.amd64, "k3s", "sha256sum-amd64.txt"),
        (Arch.arm64, "k3s-arm64", "sha256sum-arm64.txt"),
        (Arch.arm, "k3s-armhf", "sha256sum-arm.txt"),
        (Arch.s390x, "k3s-s390x", "sha256sum-s390x.txt"),
    ])
    func releaseAssetNames(arch: Arch, binary: String, checksums: String) {
        #expect(arch.binaryAssetName == binary)
        #expect(arch.checksumAssetName == checksums)
    }

    @Test func parsesKubernetesAndMachineNames() throws {
        #expect(try Arch("amd64") == .amd64)
        #expect(try Arch("x86_64") == .amd64)
        #expect(try Arch("aarch64") == .arm64)
        #expect(try Arch("armv7l") == .arm)
        #expect(try Arch("arm") == .arm)
        #expect(try Arch("s390x") == .s390x)
    }

    @Test func unknownArchNamesTheKnownOnes() {
        #expect {
            try Arch("riscv64")
        } throws: { error in
            (error as? ArchError)?.description == "unknown architecture \"riscv64\": k3s publishes binaries for amd64, arm64, arm, s390x"
        }
    }

    @Test func encodesAsKubernetesName() throws {
        let data = try JSONEncoder().encode([Arch.arm, .arm64])
        #expect(String(decoding: data, as: UTF8.self) == #"["arm","arm64"]"#)
    }
}

@Suite struct NodeRoleTests {
    @Test func serverWithEtcdFromK3sLabels() {
        let labels = ["node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true",
                      "node-role.kubernetes.io/master": "true", "kubernetes.io/arch": "amd64"]
        #expect(NodeRoleLabels(labels: labels) == NodeRoleLabels(role: .server, etcd: true))
    }

    @Test func serverWithoutEtcdAndOldMasterLabel() {
        #expect(NodeRoleLabels(labels: ["node-role.kubernetes.io/master": "true"]) == NodeRoleLabels(role: .server, etcd: false))
        #expect(NodeRoleLabels(labels: ["node-role.kubernetes.io/control-plane": ""]).role == .server)
    }

    @Test func agentHasNoRoleLabels() {
        #expect(NodeRoleLabels(labels: ["kubernetes.io/arch": "arm64"]) == NodeRoleLabels(role: .agent, etcd: false))
        #expect(NodeRoleLabels(labels: ["node-role.kubernetes.io/control-plane": "false"]).role == .agent)
    }

    @Test func unitNamesAndOrder() {
        #expect(NodeRole.server.unitName == "k3s")
        #expect(NodeRole.agent.unitName == "k3s-agent")
        #expect([NodeRole.agent, .server].sorted() == [.server, .agent])
    }
}
