import Foundation
import Synchronization
import Testing
import UpkeepFleet
import UpkeepKube
import UpkeepSandbox
import UpkeepSandboxTestSupport

/// `KubeClusterObserver` as the runtime's change feed, against the sandbox API's watches: a
/// cordon is reported as it happens, without a poll.
@Suite struct ClusterChangeFeedTests {
    @Test func aCordonIsReportedByTheNodeWatch() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 2, volumes: 0))
        defer { Task { await api.close() } }
        let observer = KubeClusterObserver(client: api.client, agentPort: 9660)
        let reports = Mutex(0)
        let following = Task { await observer.followChanges { reports.withLock { $0 += 1 } } }
        defer { following.cancel() }
        // The first lists are reported, and the node, volume and replica watches are open.
        #expect(await api.waitUntil(seconds: 30) { reports.withLock { $0 } >= 3 && api.cluster.watches.counts.open >= 3 })
        let before = reports.withLock { $0 }
        _ = try await api.client.patch(Node.self, "agent-1", ["spec": ["unschedulable": true]])
        #expect(await api.waitUntil(seconds: 30) { reports.withLock { $0 } > before }, "the cordon was reported")
        following.cancel()
        await following.value
        #expect(await api.waitUntil(seconds: 30) { api.cluster.watches.counts.open == 0 }, "cancelling closes every watch")
    }
}
