import Foundation
import NIOCore
import NIOPosix
import UpkeepHTTPServer
import UpkeepKube
import UpkeepSandbox
import UpkeepTestSupport

/// The sandbox's simulated Kubernetes API on a loopback port (plain HTTP), driven on the wall
/// clock with virtual kubelets, and a kubeconfig for it: the ground of the agent's and the
/// controller's tests that need an API but not whole sandbox nodes.
public final class SandboxAPI: @unchecked Sendable {
    public let cluster: SandboxCluster
    public let server: HTTPServer
    public let driver: RepeatedTask
    public let kubeconfig: String
    public let client: KubeClient
    private let directory: TemporaryDirectory

    public init(spec: ClusterSpec) async throws {
        cluster = SandboxCluster(spec: spec)
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
        cluster.advance()
        server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking(cluster.handle))
        driver = cluster.startDriver(on: MultiThreadedEventLoopGroup.singleton.next(), interval: .milliseconds(100))
        directory = try TemporaryDirectory()
        kubeconfig = try directory.write("""
            apiVersion: v1
            kind: Config
            clusters: [{name: sandbox, cluster: {server: "http://127.0.0.1:\(server.port)"}}]
            contexts: [{name: sandbox, context: {cluster: sandbox, user: admin}}]
            current-context: sandbox
            users: [{name: admin, user: {}}]
            """, to: "kubeconfig")
        client = try KubeClient(kubeconfig: kubeconfig)
    }

    public func close() async {
        driver.cancel()
        await client.shutdown()
        await server.close()
    }

    /// Polls `condition` every 50 ms for at most `seconds`.
    public func waitUntil(seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return try await condition()
    }
}
