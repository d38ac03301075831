import Foundation
import Testing
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox

/// kubectl from v1.32 sends the objects of `kubectl create configmap|namespace` in protobuf.
@Suite(.timeLimit(.minutes(2)))
struct ProtobufBodyTests {
    /// The body kubectl v1.32.5 sent for `kubectl create configmap d --from-literal=x=1` (its -v=8 dump).
    static let kubectl132ConfigMap: [UInt8] = [
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f, 0x6e, 0x66,
        0x69, 0x67, 0x4d, 0x61, 0x70, 0x12, 0x1b, 0x0a, 0x11, 0x0a, 0x01, 0x64, 0x12, 0x00, 0x1a, 0x00,
        0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x06, 0x0a, 0x01, 0x78, 0x12,
        0x01, 0x31, 0x1a, 0x00, 0x22, 0x00,
    ]

    @Test func aConfigMapFromKubectl132ReadsAsItsJSON() throws {
        let object = try ProtobufBody.decode(Self.kubectl132ConfigMap)
        #expect(object == ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "d"], "data": ["x": "1"]])
    }

    @Test func damagedBodiesAreRefusedAtEveryLength() {
        // Every truncation that cuts a field short is refused, never read past its end.
        var refused = 0
        for length in ProtobufBody.magic.count..<Self.kubectl132ConfigMap.count {
            if (try? ProtobufBody.decode(Array(Self.kubectl132ConfigMap.prefix(length)))) == nil { refused += 1 }
        }
        #expect(refused > 40, "most truncations cut a length-delimited field: \(refused)")
        var lying = Self.kubectl132ConfigMap
        lying[22] = 0x7f  // the object's length: more than is left
        #expect(throws: ProtobufBody.Refusal.self) { try ProtobufBody.decode(lying) }
        #expect(throws: ProtobufBody.Refusal.self) { try ProtobufBody.decode(Array("{\"kind\":\"ConfigMap\"}".utf8)) }
        var deployment = Self.kubectl132ConfigMap
        deployment.replaceSubrange(6..<21, with: [0x0a, 0x07] + Array("apps/v1".utf8) + [0x12, 0x0a] + Array("Deployment".utf8))
        deployment[5] = 0x15
        #expect {
            try ProtobufBody.decode(deployment)
        } throws: { error in
            (error as? ProtobufBody.Refusal)?.message.contains("not apps/v1 Deployment; send it as JSON or YAML") == true
        }
    }

    /// Whichever kubectl the PATH has (the Cloud SDK's dispatcher runs the one matching the
    /// server's minor, v1.33 here), `create configmap` and `create namespace` work.
    @Test func kubectlCreateWorksAgainstANewerServer() async throws {
        let api = try await APIHarness(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0, k3sVersion: "v1.33.0+k3s1"))
        defer { Task { await api.close() } }
        let configMap = try await api.kubectl("create", "configmap", "made", "--from-literal=k=v", "--from-literal=other=w")
        #expect(configMap.status == 0, "\(configMap.output)")
        #expect(api.get(.configMaps, "default", "made")?["data"] == ["k": "v", "other": "w"])
        let namespace = try await api.kubectl("create", "namespace", "team-a")
        #expect(namespace.status == 0, "\(namespace.output)")
        #expect(api.get(.namespaces, nil, "team-a") != nil)
    }
}
