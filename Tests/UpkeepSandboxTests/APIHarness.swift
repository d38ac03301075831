import Foundation
import NIOCore
import NIOPosix
import UpkeepHTTPServer
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox

/// A simulated API on a loopback port, on the wall clock, with virtual kubelets, and a
/// kubeconfig for the real kubectl. Close it at the end of the test.
final class APIHarness: Sendable {
    let cluster: SandboxCluster
    let server: HTTPServer
    let driver: RepeatedTask
    let directory: String

    let credentials: SandboxCredentials?

    init(spec: ClusterSpec, timings: ModelTimings = ModelTimings(), tls: Bool = false,
         watchBounds: WatchCache.Bounds = WatchCache.Bounds()) async throws
    {
        cluster = SandboxCluster(spec: spec, timings: timings, watchBounds: watchBounds)
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
        cluster.advance()
        let group = MultiThreadedEventLoopGroup.singleton
        credentials = tls ? try SandboxCredentials.generate(addresses: []) : nil
        server = try await HTTPServer.start(host: "127.0.0.1", port: 0, tls: try credentials?.serverContext(), group: group,
                                            responder: .nonBlocking(cluster.handle))
        driver = cluster.startDriver(on: group.next(), interval: .milliseconds(100))
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-api-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let kubeconfig = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: sandbox
              cluster: {server: "http://127.0.0.1:\(server.port)"}
            contexts:
            - name: sandbox
              context: {cluster: sandbox, user: admin}
            current-context: sandbox
            users:
            - name: admin
              user: {}
            """
        if let credentials {
            try credentials.writeKubeconfig(server: baseURL, to: "\(directory)/kubeconfig")
        } else {
            try kubeconfig.write(toFile: "\(directory)/kubeconfig", atomically: true, encoding: .utf8)
        }
    }

    var baseURL: String { "\(credentials == nil ? "http" : "https")://127.0.0.1:\(server.port)" }

    func kubectl(_ arguments: String..., timeoutSeconds: Double = 60) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "--cache-dir", "\(directory)/cache"] + arguments,
                                 timeoutSeconds: timeoutSeconds)
    }

    /// Creates an object straight through the API handler.
    @discardableResult
    func create(_ type: ResourceType, _ object: JSON) -> APIResponse {
        let namespace = object[path: "metadata", "namespace"]?.string
        return cluster.handle(APIRequest(method: "POST", uri: type.collectionPath(namespace: namespace), contentType: "application/json",
                                         body: object.serialized()))
    }

    func get(_ type: ResourceType, _ namespace: String?, _ name: String) -> JSON? {
        cluster.withModel { $0.store.get(type, namespace, name) }
    }

    func pods(on node: String) -> [Pod] {
        cluster.withModel { $0.store.list(.pods).map(Pod.init).filter { $0.nodeName == node } }
    }

    /// Polls `condition` every 50 ms for at most `timeoutSeconds`.
    func waitUntil(timeoutSeconds: Double = 20, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return condition()
    }

    func close() async {
        driver.cancel()
        await server.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
