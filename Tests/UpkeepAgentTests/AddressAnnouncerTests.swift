import Foundation
import Logging
import Testing
import UpkeepAgent
import UpkeepKube
import UpkeepSandbox
import UpkeepSandboxTestSupport

/// The announcer's lines are not what these tests read (its report is).
private let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Records the waits an announcer asks for instead of sleeping.
private final class Waits: @unchecked Sendable {
    private let lock = NSLock()
    private var seconds: [Double] = []
    func append(_ value: Double) { lock.withLock { seconds.append(value) } }
    var all: [Double] { lock.withLock { seconds } }
}

/// The agent writes `upkeep.io/agent-address` on its own Node through the simulated API (HTTPS,
/// a kubeconfig with client certificates, as k3s's own credentials are).
@Suite(.serialized) struct AddressAnnouncerTests {
    @Test func theAgentAnnotatesItsOwnNodeAndNoOther() async throws {
        let api = try await SimulatedAPI()
        let announcer = AddressAnnouncer(access: KubeAccess(kubeconfigPath: api.kubeconfig), nodeName: "agent-1", listenAddress: "127.0.0.9",
                                         logger: quiet)
        #expect(await announcer.run(port: 9700))
        #expect(try await api.client.get(Node.self, "agent-1").annotations[AddressAnnouncement.annotation] == "127.0.0.9:9700")
        for other in ["server-1", "agent-2"] {
            #expect(try await api.client.get(Node.self, other).annotations[AddressAnnouncement.annotation] == nil)
        }
        let report = await announcer.report
        #expect(report.address == "127.0.0.9:9700" && report.attempts == 1 && report.failures == 0 && !report.gaveUp, "\(report)")
        await api.close()
    }

    @Test func aWildcardListenerAnnouncesTheNodesInternalIP() async throws {
        let api = try await SimulatedAPI()
        let internalIP = try #require(try await api.client.get(Node.self, "agent-2").internalIP)
        let announcer = AddressAnnouncer(access: KubeAccess(kubeconfigPath: api.kubeconfig), nodeName: "agent-2", listenAddress: "0.0.0.0",
                                         logger: quiet)
        #expect(await announcer.run(port: 9660))
        #expect(try await api.client.get(Node.self, "agent-2").annotations[AddressAnnouncement.annotation] == "\(internalIP):9660")
        await api.close()
    }

    /// A Node the API does not have: every try fails, each is counted, the waits grow to the
    /// bound and the announcer gives up after `attemptsMax` tries.
    @Test func failuresAreRetriedABoundedNumberOfTimesAndCounted() async throws {
        let api = try await SimulatedAPI()
        let waits = Waits()
        let announcer = AddressAnnouncer(access: KubeAccess(kubeconfigPath: api.kubeconfig), nodeName: "agent-9", listenAddress: "127.0.0.9",
                                         logger: quiet, sleep: { waits.append($0) })
        #expect(await announcer.run(port: 9700) == false)
        let report = await announcer.report
        #expect(report.attempts == AddressAnnouncement.attemptsMax && report.failures == AddressAnnouncement.attemptsMax && report.gaveUp)
        #expect(report.address == nil && report.lastError?.contains("404") == true, "\(report)")
        #expect(waits.all == [1, 2, 4, 8, 16, 30, 30, 30, 30])
        await api.close()

        // No usable kubeconfig: the same, with a message that names the file.
        let missing = AddressAnnouncer(access: KubeAccess(kubeconfigPath: "/nonexistent/kubelet.kubeconfig"), nodeName: "agent-1",
                                       listenAddress: "127.0.0.9", logger: quiet, sleep: { _ in })
        #expect(await missing.run(port: 9700) == false)
        #expect(await missing.report.lastError?.contains("/nonexistent/kubelet.kubeconfig") == true)
    }

    @Test func theAdvertisedAddress() {
        #expect(AddressAnnouncement.advertised(listenAddress: "10.0.0.5", port: 9660, internalIP: "10.0.0.9") == "10.0.0.5:9660")
        #expect(AddressAnnouncement.advertised(listenAddress: "fd00::5", port: 9660, internalIP: nil) == "[fd00::5]:9660")
        #expect(AddressAnnouncement.advertised(listenAddress: "::", port: 9660, internalIP: "fd00::9") == "[fd00::9]:9660")
        #expect(AddressAnnouncement.advertised(listenAddress: "0.0.0.0", port: 9660, internalIP: nil) == nil)
    }
}
