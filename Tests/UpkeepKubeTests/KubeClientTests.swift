import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI
import UpkeepSandbox

/// The client library against the simulated API, over plain HTTP and over HTTPS with client
/// certificates as k3s serves its API.
@Suite(.timeLimit(.minutes(1)))
struct KubeClientTests {
    /// A simulated cluster with virtual kubelets, served on a loopback port.
    final class Served: Sendable {
        let cluster: SandboxCluster
        let server: HTTPServer
        let credentials: SandboxCredentials?

        init(tls: Bool) async throws {
            let spec = ClusterSpec(servers: 1, agents: 2, volumes: 2, replicas: 2)
            // A manual clock: the test moves time, nothing happens behind its back.
            let clock = ManualClock(1_800_000_000)
            cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now })
            cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
            cluster.advance()
            clock.advance(by: 5)
            cluster.advance()
            credentials = tls ? try SandboxCredentials.generate(addresses: []) : nil
            server = try await HTTPServer.start(host: "127.0.0.1", port: 0, tls: try credentials?.serverContext(),
                                                responder: .nonBlocking(cluster.handle))
        }

        var url: String { "\(credentials == nil ? "http" : "https")://127.0.0.1:\(server.port)" }

        func client() throws -> KubeClient {
            if let credentials {
                let config = try Kubeconfig.parse(yaml: try credentials.kubeconfig(server: url), directory: "/")
                return try KubeClient(endpoint: try config.endpoint())
            }
            return try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL(url))))
        }
    }

    @Test func getListPatchCreateDeleteOverPlainHTTPWithKeepAlive() async throws {
        let served = try await Served(tls: false)
        let client = try served.client()
        let nodes = try await client.list(Node.self)
        #expect(nodes.map(\.name) == ["agent-1", "agent-2", "server-1"])
        let servers = try await client.list(Node.self, labelSelector: LabelSelector(matching: ["node-role.kubernetes.io/control-plane": "true"]))
        #expect(servers.map(\.name) == ["server-1"])
        let node = try await client.get(Node.self, "agent-1")
        #expect(node.kubeletVersion == "v1.30.6+k3s1" && node.internalIP == "127.0.1.2")

        let cordoned = try await client.patch(Node.self, "agent-1", ["spec": ["unschedulable": true]], as: .strategicMerge)
        #expect(cordoned.unschedulable)
        let pods = try await client.pods(on: "agent-2")
        #expect(!pods.isEmpty && pods.allSatisfy { $0.nodeName == "agent-2" })

        let snapshot = try await client.create(LonghornSnapshot(name: "pre-upgrade-1", volume: try #require(
            try await client.list(LonghornVolume.self, namespace: "longhorn-system").first).name))
        #expect(snapshot.uid != "" && snapshot.resourceVersion != "")
        try await client.delete(.longhornSnapshots, "pre-upgrade-1", namespace: "longhorn-system")
        await #expect(throws: KubeAPIError.notFound("snapshots", "pre-upgrade-1", group: "longhorn.io")) {
            _ = try await client.get(LonghornSnapshot.self, "pre-upgrade-1", namespace: "longhorn-system")
        }
        #expect(served.server.acceptedConnections == 1, "one keep-alive connection carried every request")
        await client.shutdown()
    }

    @Test func apiErrorsAreTyped() async throws {
        let served = try await Served(tls: false)
        let client = try served.client()
        do {
            _ = try await client.get(Node.self, "ghost")
            Issue.record("a missing node was returned")
        } catch let error as KubeAPIError {
            #expect(error.isNotFound && error.code == 404 && error.message == "nodes \"ghost\" not found")
        }
        var stale = try await client.get(.nodes, "agent-2")
        stale[path: "metadata", "resourceVersion"] = "1"
        await #expect(throws: KubeAPIError.self) { _ = try await client.replace(.nodes, stale) }
        do {
            _ = try await client.replace(.nodes, stale)
        } catch let error as KubeAPIError {
            #expect(error.isConflict)
        }
        do {
            _ = try await client.create(.namespaces, ["metadata": ["name": "default"]])
        } catch let error as KubeAPIError {
            #expect(error.isAlreadyExists)
        }
        // Evictions below a budget come back as 429 with the budget named.
        let web = try await client.list(Pod.self, namespace: "default", labelSelector: try LabelSelector.parse("app=web"))
        try await client.evict(pod: web[0].name, namespace: "default")
        do {
            try await client.evict(pod: web[1].name, namespace: "default")
            Issue.record("eviction below minAvailable was allowed")
        } catch let error as KubeAPIError {
            #expect(error.isTooManyRequests)
            #expect(error.causes.first?.message.contains("disruption budget web") == true)
        }
        await #expect(throws: HTTPClientError.self) {
            let dead = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:1"))))
            _ = try await dead.version()
        }
        await client.shutdown()
    }

    /// An API that accepts connections and never answers the TLS handshake: each request
    /// gives up within `requestTimeoutSeconds`, connecting included (not after the 10 s a
    /// connection alone may take).
    @Test func aRequestIsBoundedAsAWholeConnectingIncluded() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(silent.localAddress?.port)
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("https://127.0.0.1:\(port)"))),
                                    requestTimeoutSeconds: 2)
        let started = ContinuousClock.now
        await #expect(throws: HTTPClientError.self) { _ = try await client.version() }
        let took = ContinuousClock.now - started
        #expect(took < .seconds(5), "a request took \(took) against an API that never answers")
        await client.shutdown()
        try await silent.close()
    }

    @Test func httpsWithClientCertificateAsK3sServesIt() async throws {
        let served = try await Served(tls: true)
        let client = try served.client()
        let version = try await client.version()
        #expect(version["gitVersion"] == "v1.30.6+k3s1")
        let volumes = try await client.list(LonghornVolume.self, namespace: "longhorn-system")
        #expect(volumes.count == 2)
        let ks = try await client.patch(FluxKustomization.self, "apps", namespace: "flux-system", ["spec": ["suspend": true]])
        #expect(ks.suspended)
        await client.shutdown()

        // Without a client certificate the server refuses the handshake.
        let credentials = try #require(served.credentials)
        let anonymous = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL(served.url)),
                                                              certificateAuthorityPEM: try credentials.serverCA.certificate.pem()))
        await #expect(throws: HTTPClientError.self) { _ = try await anonymous.version() }
        // Trusting another CA, the client refuses the server.
        let other = try SandboxCredentials.generate(addresses: [])
        let misled = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL(served.url)),
                                                           certificateAuthorityPEM: try other.serverCA.certificate.pem(),
                                                           clientCertificatePEM: try credentials.admin.certificate.pem(),
                                                           clientKeyPEM: try credentials.admin.key.pkcs8PEM()))
        do {
            _ = try await misled.version()
            Issue.record("a server with a certificate from an untrusted CA was accepted")
        } catch let error as HTTPClientError {
            guard case .tls(_, let reason) = error else { Issue.record("expected a TLS failure, got \(error) \(String(describing: error))"); return }
            #expect(reason.contains("not signed by a trusted CA"), "\(reason)")
        }
    }
}

struct KubeconfigTests {
    @Test func readsDataAndFileReferencesTokensAndContexts() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "CA PEM".write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
        try "token-123\n".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        let yaml = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: a
              cluster: {server: "https://10.0.0.1:6443", certificate-authority: ca.crt}
            - name: b
              cluster: {server: "https://[fd00::1]:6443/base/", certificate-authority-data: \(Data("B CA".utf8).base64EncodedString())}
            users:
            - name: tok
              user: {tokenFile: token}
            - name: plugin
              user: {exec: {command: aws}}
            contexts:
            - name: one
              context: {cluster: a, user: tok, namespace: ops}
            - name: two
              context: {cluster: b, user: plugin}
            current-context: one
            """
        try yaml.write(toFile: "\(directory)/config", atomically: true, encoding: .utf8)
        let config = try Kubeconfig.load(environment: ["KUBECONFIG": "\(directory)/missing:\(directory)/config"])
        let one = try config.endpoint()
        #expect(one.server.host == "10.0.0.1" && one.server.port == 6443 && one.server.isTLS)
        #expect(one.certificateAuthorityPEM == "CA PEM" && one.bearerToken == "token-123" && one.namespace == "ops")
        #expect(throws: KubeconfigError.self) { try config.endpoint(context: "two") }
        #expect(config.clusters["b"]?.certificateAuthorityPEM == "B CA")
        #expect(KubeEndpoint.ServerURL("https://[fd00::1]:6443/base/")?.basePath == "/base")
        #expect(throws: KubeconfigError.unknown("context", "three", "\(directory)/config")) { try config.endpoint(context: "three") }
        #expect(throws: KubeconfigError.notFound(["/nonexistent/a"])) { try Kubeconfig.load(environment: ["KUBECONFIG": "/nonexistent/a"]) }
        #expect(Kubeconfig.candidatePaths(environment: ["HOME": "/home/u"]) == ["/home/u/.kube/config", "/etc/rancher/k3s/k3s.yaml"])
    }
}
