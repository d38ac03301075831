import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepKube
import UpkeepSandbox
import UpkeepTestSupport
import UpkeepUpdates

/// A simulated Kubernetes API (the sandbox's) on a loopback port, and a client for it.
final class SimulatedCluster {
    let cluster: SandboxCluster
    let server: SandboxHTTPServer
    let client: KubeClient
    let directory: TemporaryDirectory

    init(spec: ClusterSpec) async throws {
        cluster = SandboxCluster(spec: spec)
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
        cluster.advance()
        server = try await SandboxHTTPServer.start(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton,
                                                   responder: cluster.handle)
        directory = try TemporaryDirectory()
        let kubeconfig = try directory.write("""
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
            """, to: "kubeconfig")
        client = try KubeClient(kubeconfig: kubeconfig)
    }

    var kubeconfigPath: String { directory.file("kubeconfig") }

    func close() async {
        await client.shutdown()
        await server.close()
    }
}

func httpClient(cache: ETagCache? = nil, attemptsMax: Int = 2, responseTimeoutSeconds: Double = 5) throws -> HTTPClient {
    try HTTPClient(configuration: .init(connectTimeoutSeconds: 2, responseTimeoutSeconds: responseTimeoutSeconds,
                                        retry: RetryPolicy(attemptsMax: attemptsMax, backoffBaseSeconds: 0.05, rateLimitWaitSecondsMax: 5)),
                   cache: cache)
}

func endpoints(_ server: FixtureReleaseServer) throws -> GitHubReleaseSource.Endpoints {
    GitHubReleaseSource.Endpoints(api: try HTTPURL(server.baseURL), channelServer: try HTTPURL(server.baseURL))
}

@Suite("upkeep check end to end: simulated API and a GitHub-shaped server", .serialized, .timeLimit(.minutes(1)))
struct CheckerIntegrationTests {
    @Test("mixed node versions from the API, paged releases, the channel's 302, one arch missing an asset")
    func fullCheck() async throws {
        let cluster = try await SimulatedCluster(spec: ClusterSpec(servers: 3, agents: 2, volumes: 0, k3sVersion: "v1.30.6+k3s1",
                                                                   longhornVersion: "v1.7.2", fluxVersion: "v2.3.0"))
        // Mid-rollout: agent-2 already runs v1.31.2 and is an armhf board.
        cluster.cluster.withModel { $0.kubeletStatus(node: "agent-2", ready: true, version: "v1.31.2+k3s1", now: cluster.cluster.now) }
        _ = try await cluster.client.patch(.nodes, "agent-2", ["metadata": ["labels": ["kubernetes.io/arch": "arm"]]])
        _ = try await cluster.client.patch(.nodes, "agent-2", ["status": ["nodeInfo": ["architecture": "arm"]]], subresource: "status")
        let releases = try await FixtureReleaseServer(pageSize: 4)
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases), pagesMax: 10)

        let installed = try await ClusterInventory(client: cluster.client).read(Set(Component.allCases))
        #expect(installed.k3s.versions == [version("v1.30.6+k3s1"), version("v1.31.2+k3s1")])
        #expect(installed.k3s.nodes.first { $0.name == "agent-2" }?.arch == "arm")
        #expect(installed.flux?.version == version("v2.3.0") && installed.flux?.bootstrapped == true)
        #expect(installed.longhorn?.version == version("v1.7.2"))

        let report = try await UpdateChecker(source: source).check(installed: installed, settings: CheckSettings())
        let k3s = try #require(report.component(.k3s))
        #expect(k3s.target == version("v1.33.5+k3s1"))
        #expect(k3s.path.map(\.version) == [version("v1.31.4+k3s1"), version("v1.32.3+k3s1"), version("v1.33.5+k3s1")])
        #expect(k3s.path[0].nodes == ["server-1", "server-2", "server-3", "agent-1", "agent-2"])
        #expect(k3s.channels?.map(\.name) == ["stable", "latest", "v1.31", "v1.32", "v1.33"])
        #expect(k3s.warnings.contains { $0.code == "arch-asset-missing" && $0.message.contains("agent-2 (arm)") })
        #expect(report.component(.longhorn)?.path.map(\.version) == [version("v1.8.2"), version("v1.9.1")])
        #expect(report.component(.flux)?.target == version("v2.8.0"))
        #expect(report.rateLimit?.remaining == 57)
        // 15 k3s releases over pages of 4 read entirely (the oldest installed is old), 2 Flux pages, 2 Longhorn pages.
        let paths = releases.counters.requests
        #expect(paths.filter { $0 == "/repos/k3s-io/k3s/releases" }.count == 4)
        #expect(paths.contains("/v1-release/channels/stable"))
        await client.shutdown()
        await releases.close()
        await cluster.close()
    }

    @Test("paging stops after a page with nothing newer than what is installed")
    func pagingStopsEarly() async throws {
        let releases = try await FixtureReleaseServer(pageSize: 4)
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        let list = try await source.releases(of: .k3s, oldestInstalled: version("v1.33.4+k3s1"))
        // Page 1: v1.34.2 … v1.32.3; page 2: v1.33.4, v1.32.1, v1.31.4, v1.32.0-rc1 -> nothing newer: stop.
        #expect(list.pagesRead == 2 && !list.truncated)
        let bounded = try await GitHubReleaseSource(client: client, endpoints: try endpoints(releases), pagesMax: 2)
            .releases(of: .k3s, oldestInstalled: nil)
        #expect(bounded.truncated && bounded.releases.count == 8)
        await client.shutdown()
        await releases.close()
    }

    @Test("a repeated check costs only 304s thanks to the ETag cache")
    func etagReuse() async throws {
        let releases = try await FixtureReleaseServer()
        let state = try TemporaryDirectory()
        let client = try httpClient(cache: try ETagCache(directory: state.file("http-cache")))
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        let first = try await source.releases(of: .longhorn, oldestInstalled: nil)
        let channels = try await source.channels()
        #expect(releases.counters.full == 2 && releases.counters.notModified == 0)
        // A new client on the same state directory: the cache is on disk, not in memory.
        let again = try httpClient(cache: try ETagCache(directory: state.file("http-cache")))
        let second = GitHubReleaseSource(client: again, endpoints: try endpoints(releases))
        #expect(try await second.releases(of: .longhorn, oldestInstalled: nil) == first)
        #expect(try await second.channels() == channels)
        #expect(releases.counters.full == 2 && releases.counters.notModified == 2)
        await client.shutdown()
        await again.shutdown()
        await releases.close()
    }

    @Test("an exhausted rate limit far from its reset fails with a clear error, without waiting")
    func rateLimited() async throws {
        let releases = try await FixtureReleaseServer()
        releases.rateLimited.withLockedValue { $0 = true }
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        await #expect {
            _ = try await source.releases(of: .flux, oldestInstalled: nil)
        } throws: { error in
            let text = "\(error)"
            return error is ReleaseSourceError && text.contains("rate limit exhausted") && text.contains("GITHUB_TOKEN")
        }
        #expect(releases.counters.requests.count == 1)
        await client.shutdown()
        await releases.close()
    }

    @Test("a token goes to the API and is named nowhere in errors")
    func tokenSent() async throws {
        let releases = try await FixtureReleaseServer()
        let client = try httpClient()
        let token = try BearerToken(value: "ghp_secret", source: "test")
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases), token: token)
        _ = try await source.releases(of: .flux, oldestInstalled: nil)
        _ = try await source.channel(named: "stable")
        #expect(releases.counters.authorizations == ["Bearer ghp_secret", nil])
        await #expect {
            _ = try await source.channel(named: "v9.99")
        } throws: { error in
            "\(error)".contains("no channel named v9.99") && !"\(error)".contains("ghp_secret")
        }
        await client.shutdown()
        await releases.close()
    }

    @Test("a corrupted answer is refused as a whole, naming the source")
    func corruptedJSON() async throws {
        let releases = try await FixtureReleaseServer()
        releases.corrupt.withLockedValue { $0 = .k3s }
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        await #expect {
            _ = try await source.releases(of: .k3s, oldestInstalled: nil)
        } throws: { error in
            guard let answer = error as? AnswerError else { return false }
            return answer.problem.hasPrefix("not JSON") && answer.source.hasSuffix("/repos/k3s-io/k3s/releases?per_page=100")
        }
        await client.shutdown()
        await releases.close()
    }

    @Test("a release source that accepts and never answers times out")
    func neverAnswers() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = silent.localAddress?.port ?? 0
        let client = try httpClient(attemptsMax: 2, responseTimeoutSeconds: 0.3)
        let url = try HTTPURL("http://127.0.0.1:\(port)")
        let source = GitHubReleaseSource(client: client, endpoints: .init(api: url, channelServer: url))
        await #expect {
            _ = try await source.channels()
        } throws: { error in
            "\(error)".contains("did not answer within 0.3 s") && "\(error)".contains("failed 2 times")
        }
        await client.shutdown()
        try await silent.close()
    }

    @Test("a mirror directory and the same tree over HTTP give the same report as GitHub")
    func mirrorsGiveTheSameReport() async throws {
        let mirror = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: mirror.file("releases/k3s-io"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mirror.file("releases/fluxcd"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mirror.file("releases/longhorn"), withIntermediateDirectories: true)
        for component in Component.allCases {
            try Data(JSON.array(ReleaseFixture.releases(of: component)).serialized()).write(to: URL(fileURLWithPath: mirror.file(MirrorReleaseSource.path(of: component))))
        }
        try Data(ReleaseFixture.channels().serialized()).write(to: URL(fileURLWithPath: mirror.file("channels.json")))

        let installed = InstalledVersions(k3s: PlannerTests.midRollout,
                                          flux: InstalledComponent(state: .installed, version: version("v2.3.0"), source: "label"),
                                          longhorn: InstalledComponent(state: .installed, version: version("v1.7.2"), source: "setting"))
        let releases = try await FixtureReleaseServer(pageSize: 5)
        let client = try httpClient()
        let online = try await UpdateChecker(source: GitHubReleaseSource(client: client, endpoints: try endpoints(releases)), now: { 0 })
            .check(installed: installed, settings: CheckSettings())
        let directory = try await UpdateChecker(source: MirrorReleaseSource(location: .directory(mirror.path), client: nil), now: { 0 })
            .check(installed: installed, settings: CheckSettings())
        let root = mirror.path
        let files = try await SandboxHTTPServer.start(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton) { request in
            guard let data = FileManager.default.contents(atPath: root + request.path) else { return .text("missing\n", status: 404) }
            return APIResponse(status: 200, body: Array(data))
        }
        let overHTTP = try await UpdateChecker(source: MirrorReleaseSource(location: .url(try HTTPURL("http://127.0.0.1:\(files.port)/")), client: client),
                                               now: { 0 }).check(installed: installed, settings: CheckSettings())
        func comparable(_ report: CheckReport) -> CheckReport {
            var copy = report
            copy.releaseSource = ""
            copy.rateLimit = nil
            return copy
        }
        #expect(comparable(directory) == comparable(online))
        #expect(comparable(overHTTP) == comparable(online))
        #expect(directory.releaseSource == "mirror \(mirror.path)")

        try Data(#"{"entries":[{"component":"longhorn","from":"v1.7.0","before":"v1.8.0","kubernetesMax":"v1.31","source":"mirror"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: mirror.file("compatibility.json")))
        let withTable = try await UpdateChecker(source: MirrorReleaseSource(location: .directory(mirror.path), client: nil))
            .check(installed: installed, settings: CheckSettings())
        #expect(withTable.warnings.contains { $0.code == "kubernetes-too-new" })

        try FileManager.default.removeItem(atPath: mirror.file("releases/fluxcd/flux2.json"))
        await #expect {
            _ = try await UpdateChecker(source: MirrorReleaseSource(location: .directory(mirror.path), client: nil))
                .check(installed: installed, settings: CheckSettings())
        } throws: { error in
            (error as? ReleaseSourceError)?.problem == "missing; the mirror layout is described in docs/check.md"
        }
        await client.shutdown()
        await files.close()
        await releases.close()
    }
}
