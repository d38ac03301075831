import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI
import UpkeepSandbox
import UpkeepTestSupport
import UpkeepUpdates

/// A simulated Kubernetes API (the sandbox's) on a loopback port, and a client for it.
final class SimulatedCluster {
    let cluster: SandboxCluster
    let server: HTTPServer
    let client: KubeClient
    let directory: TemporaryDirectory

    init(spec: ClusterSpec) async throws {
        cluster = SandboxCluster(spec: spec)
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
        cluster.advance()
        server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking(cluster.handle))
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

func endpoints(_ server: SandboxReleases) throws -> GitHubReleaseSource.Endpoints {
    GitHubReleaseSource.Endpoints(api: try HTTPURL(server.baseURL), channelServer: try HTTPURL(server.baseURL))
}

/// Every answer comes from the sandbox's own release server (`ReleaseServer`), its faults switched
/// as `upkeep sandbox fault releases …` switches them.
@Suite("upkeep check end to end: simulated API and the sandbox release server", .serialized, .timeLimit(.minutes(1)))
struct CheckerIntegrationTests {
    /// k3s mid-rollout (PlannerTests), Flux v2.3.0, Longhorn v1.7.2.
    static let midRollout = InstalledVersions(k3s: PlannerTests.midRollout,
                                              flux: InstalledComponent(state: .installed, version: version("v2.3.0"), source: "label"),
                                              longhorn: InstalledComponent(state: .installed, version: version("v1.7.2"), source: "setting"))
    static let allChannels = ["stable", "latest", "testing", "v1.28", "v1.29", "v1.30", "v1.31", "v1.32", "v1.33", "v1.34"]

    @Test("mixed node versions from the API, paged releases, the channel's 302, one arch missing an asset")
    func fullCheck() async throws {
        let cluster = try await SimulatedCluster(spec: ClusterSpec(servers: 3, agents: 2, volumes: 0, k3sVersion: "v1.30.6+k3s1",
                                                                   longhornVersion: "v1.7.2", fluxVersion: "v2.3.0"))
        // Mid-rollout: agent-2 already runs v1.31.2 and is an armhf board.
        cluster.cluster.withModel { $0.kubeletStatus(node: "agent-2", ready: true, version: "v1.31.2+k3s1", now: cluster.cluster.now) }
        _ = try await cluster.client.patch(.nodes, "agent-2", ["metadata": ["labels": ["kubernetes.io/arch": "arm"]]])
        _ = try await cluster.client.patch(.nodes, "agent-2", ["status": ["nodeInfo": ["architecture": "arm"]]], subresource: "status")
        let releases = try await SandboxReleases(pageSize: 4)
        try releases.fault("drop-asset", "k3s-armhf", version: "v1.32.3+k3s1")
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
        // The draft v1.34.2 (not listed without a token) and the pre-release v1.32.0-rc1 are no hops.
        #expect(k3s.path.map(\.version) == [version("v1.31.4+k3s1"), version("v1.32.3+k3s1"), version("v1.33.5+k3s1")])
        #expect(k3s.latest == version("v1.34.1+k3s1"))
        #expect(k3s.path[0].nodes == ["server-1", "server-2", "server-3", "agent-1", "agent-2"])
        #expect(k3s.channels?.map(\.name) == Self.allChannels)
        #expect(k3s.warnings.filter { $0.code == "arch-asset-missing" }.count == 1)
        #expect(k3s.warnings.contains { $0.code == "arch-asset-missing" && $0.message.contains("agent-2 (arm)") && $0.message.contains("v1.32.3+k3s1") })
        #expect(report.component(.longhorn)?.path.map(\.version) == [version("v1.8.2"), version("v1.9.1")])
        #expect(report.component(.longhorn)?.latest == version("v1.9.1"))
        #expect(report.component(.flux)?.target == version("v2.8.0"))
        // The window's 60 less every answer the API charged (all of them 200s here).
        #expect(releases.charged == 8)
        #expect(report.rateLimit?.limit == 60 && report.rateLimit?.remaining == 60 - releases.charged)
        // 14 listed k3s releases over pages of 4 read entirely (the oldest installed is old), 2 Flux pages, 2 Longhorn pages.
        #expect(releases.statuses("/repos/k3s-io/k3s/releases") == [200, 200, 200, 200])
        #expect(releases.statuses("/repos/fluxcd/flux2/releases").count == 2)
        #expect(releases.statuses("/repos/longhorn/longhorn/releases").count == 2)
        #expect(releases.statuses("/v1-release/channels/stable") == [302])

        // Without the fault v1.32.3 publishes k3s-armhf again: no arch warning.
        try releases.fault("clear")
        let whole = try await UpdateChecker(source: source).check(installed: installed, settings: CheckSettings())
        #expect(whole.component(.k3s)?.path == k3s.path)
        #expect(whole.component(.k3s)?.warnings.contains { $0.code == "arch-asset-missing" } == false)
        await client.shutdown()
        await releases.close()
        await cluster.close()
    }

    @Test("pre-releases are left out unless asked for, then they are the newest")
    func preReleases() async throws {
        let releases = try await SandboxReleases()
        let client = try httpClient()
        let installed = Self.midRollout
        let checker = UpdateChecker(source: GitHubReleaseSource(client: client, endpoints: try endpoints(releases)))
        let plain = try await checker.check(installed: installed, settings: CheckSettings())
        #expect(plain.component(.flux)?.latest == version("v2.8.0"))
        #expect(plain.component(.longhorn)?.latest == version("v1.9.1"))
        let asked = try await checker.check(installed: installed, settings: CheckSettings(filter: ReleaseFilter(includePreReleases: true)))
        #expect(asked.component(.flux)?.latest == version("v2.9.0-rc.1"))
        #expect(asked.component(.longhorn)?.latest == version("v1.10.0-rc1"))
        await client.shutdown()
        await releases.close()
    }

    @Test("paging stops after a page with nothing newer than what is installed")
    func pagingStopsEarly() async throws {
        let releases = try await SandboxReleases(pageSize: 4)
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        let list = try await source.releases(of: .k3s, oldestInstalled: version("v1.33.4+k3s1"))
        // Page 1: v1.34.1, v1.33.5, v1.32.3, v1.33.4; page 2: v1.32.1, v1.31.4, v1.32.0-rc1, v1.31.2 -> nothing newer: stop.
        #expect(list.pagesRead == 2 && !list.truncated)
        #expect(list.releases.map(\.tag) == ["v1.34.1+k3s1", "v1.33.5+k3s1", "v1.32.3+k3s1", "v1.33.4+k3s1",
                                             "v1.32.1+k3s1", "v1.31.4+k3s1", "v1.32.0-rc1+k3s1", "v1.31.2+k3s1"])
        let bounded = try await GitHubReleaseSource(client: client, endpoints: try endpoints(releases), pagesMax: 2)
            .releases(of: .k3s, oldestInstalled: nil)
        #expect(bounded.truncated && bounded.releases.count == 8)
        await client.shutdown()
        await releases.close()
    }

    @Test("a repeated check costs only 304s thanks to the ETag cache")
    func etagReuse() async throws {
        let releases = try await SandboxReleases()
        let state = try TemporaryDirectory()
        let client = try httpClient(cache: try ETagCache(directory: state.file("http-cache")))
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        let first = try await source.releases(of: .longhorn, oldestInstalled: nil)
        let channels = try await source.channels()
        #expect(releases.full == 2 && releases.notModified == 0)
        // A new client on the same state directory: the cache is on disk, not in memory.
        let again = try httpClient(cache: try ETagCache(directory: state.file("http-cache")))
        let second = GitHubReleaseSource(client: again, endpoints: try endpoints(releases))
        #expect(try await second.releases(of: .longhorn, oldestInstalled: nil) == first)
        #expect(try await second.channels() == channels)
        #expect(releases.full == 2 && releases.notModified == 2)
        // A 304 costs no rate limit, as on GitHub.
        #expect(releases.charged == 1 && second.rateLimit?.remaining == 59)
        await client.shutdown()
        await again.shutdown()
        await releases.close()
    }

    @Test("an exhausted rate limit far from its reset fails with a clear error, without waiting")
    func rateLimited() async throws {
        let releases = try await SandboxReleases()
        try releases.fault("rate-limit")
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        await #expect {
            _ = try await source.releases(of: .flux, oldestInstalled: nil)
        } throws: { error in
            let text = "\(error)"
            return error is ReleaseSourceError && text.contains("rate limit exhausted") && text.contains("GITHUB_TOKEN")
        }
        #expect(releases.requests.map(\.status) == [403])
        await client.shutdown()
        await releases.close()
    }

    @Test("403 with x-ratelimit-remaining 0, then the answer once the limit has reset")
    func rateLimitResets() async throws {
        let releases = try await SandboxReleases()
        try releases.fault("rate-limit", "1")
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        let list = try await source.releases(of: .flux, oldestInstalled: nil)
        #expect(list.releases.map(\.tag) == ["v2.9.0-rc.1", "v2.8.0", "v2.7.2", "v2.4.0", "v2.3.0"])
        #expect(releases.statuses("/repos/fluxcd/flux2/releases") == [403, 200])
        // A fresh window after the reset: one request used.
        #expect(source.rateLimit?.remaining == 59)
        await client.shutdown()
        await releases.close()
    }

    @Test("a secondary limit's retry-after is honoured on 403 and on 429; one beyond the wait allowed fails at once")
    func retryAfter() async throws {
        let releases = try await SandboxReleases()
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        for status in [403, 429] {
            try releases.fault("clear")
            try releases.fault("retry-after", "1", options: .init(requests: 1, status: status))
            let list = try await source.releases(of: .longhorn, oldestInstalled: nil)
            #expect(list.releases.count == 7)
        }
        #expect(releases.statuses("/repos/longhorn/longhorn/releases") == [403, 200, 429, 200])

        try releases.fault("retry-after", "600", options: .init(requests: 5, status: 429))
        await #expect {
            _ = try await source.releases(of: .k3s, oldestInstalled: nil)
        } throws: { error in
            error is ReleaseSourceError && "\(error)".contains("rate limit")
        }
        #expect(releases.statuses("/repos/k3s-io/k3s/releases") == [429])
        await client.shutdown()
        await releases.close()
    }

    @Test("a token goes to the API, shows drafts, and is named nowhere in errors")
    func tokenSent() async throws {
        let releases = try await SandboxReleases()
        let client = try httpClient()
        let token = try BearerToken(value: "ghp_secret", source: "test")
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases), token: token)
        let withToken = try await source.releases(of: .k3s, oldestInstalled: nil)
        _ = try await source.channel(named: "stable")
        #expect(releases.requests.map(\.authorizationSHA256) == [SHA256.hex(Array("Bearer ghp_secret".utf8)), nil])
        // GitHub lists drafts only to a token with push access; the checker still leaves them out.
        #expect(withToken.releases.contains { $0.tag == "v1.34.2+k3s1" && $0.draft })
        let anonymous = try await GitHubReleaseSource(client: client, endpoints: try endpoints(releases)).releases(of: .k3s, oldestInstalled: nil)
        #expect(!anonymous.releases.contains { $0.tag == "v1.34.2+k3s1" })
        #expect(anonymous.releases.count == withToken.releases.count - 1)
        await #expect {
            _ = try await source.channel(named: "v9.99")
        } throws: { error in
            "\(error)".contains("no channel named v9.99") && !"\(error)".contains("ghp_secret")
        }
        await client.shutdown()
        await releases.close()
    }

    @Test("anonymous callers share a 60-request window; each token has its own of 5,000, as on GitHub")
    func tokenWindows() {
        let catalog = ReleaseCatalog(releases: ReleaseFixture.catalogReleases(), faults: { SandboxFaults() }, now: 1_000)
        func get(_ token: String?) -> APIResponse {
            catalog.handle(APIRequest(method: "GET", uri: "/repos/k3s-io/k3s/releases/latest",
                                      headers: token.map { [("authorization", "Bearer \($0)")] } ?? []),
                           baseURL: "http://127.0.0.1", now: 1_010)
        }
        func header(_ response: APIResponse, _ name: String) -> String? { response.headers.first { $0.0 == name }?.1 }
        for _ in 0..<ReleaseCatalog.rateLimit { #expect(get(nil).status == 200) }
        let refused = get(nil)
        #expect(refused.status == 403 && header(refused, "x-ratelimit-limit") == "60" && header(refused, "x-ratelimit-remaining") == "0")
        #expect(String(decoding: refused.body, as: UTF8.self).contains("Authenticated requests get a higher rate limit"))
        let first = get("ghp_one")
        #expect(first.status == 200 && header(first, "x-ratelimit-limit") == "5000" && header(first, "x-ratelimit-remaining") == "4999")
        #expect(header(get("ghp_one"), "x-ratelimit-remaining") == "4998")
        #expect(header(get("ghp_two"), "x-ratelimit-remaining") == "4999")
        #expect(get(nil).status == 403)
    }

    @Test("a corrupted answer is refused as a whole, naming the source")
    func corruptedJSON() async throws {
        let releases = try await SandboxReleases()
        try releases.fault("corrupt-json", "k3s-io/k3s")
        let client = try httpClient()
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        await #expect {
            _ = try await source.releases(of: .k3s, oldestInstalled: nil)
        } throws: { error in
            guard let answer = error as? AnswerError else { return false }
            return answer.problem.hasPrefix("not JSON") && answer.source.hasSuffix("/repos/k3s-io/k3s/releases?per_page=100")
        }
        // Only the named list is cut; the channel list too once it is named.
        #expect(try await source.releases(of: .flux, oldestInstalled: nil).releases.count == 5)
        try releases.fault("corrupt-json", "channels")
        await #expect {
            _ = try await source.channels()
        } throws: { error in
            (error as? AnswerError)?.source.hasSuffix("/v1-release/channels") == true
        }
        await client.shutdown()
        await releases.close()
    }

    @Test("a release server that accepts and never answers times out, and answers again once the fault is cleared")
    func neverAnswers() async throws {
        let releases = try await SandboxReleases()
        try releases.fault("hang")
        let client = try httpClient(attemptsMax: 2, responseTimeoutSeconds: 0.3)
        let source = GitHubReleaseSource(client: client, endpoints: try endpoints(releases))
        await #expect {
            _ = try await source.channels()
        } throws: { error in
            "\(error)".contains("did not answer within 0.3 s") && "\(error)".contains("failed 2 times")
        }
        #expect(releases.requests.isEmpty)
        try releases.fault("clear")
        #expect(try await source.channels().map(\.name) == Self.allChannels)
        await client.shutdown()
        await releases.close()
    }

    @Test("a mirror directory and the same tree over HTTP give the same report as GitHub")
    func mirrorsGiveTheSameReport() async throws {
        let releases = try await SandboxReleases(pageSize: 5)
        let mirror = try TemporaryDirectory()
        try releases.writeMirror(to: mirror.path)

        let installed = Self.midRollout
        let client = try httpClient()
        let online = try await UpdateChecker(source: GitHubReleaseSource(client: client, endpoints: try endpoints(releases)), now: { 0 })
            .check(installed: installed, settings: CheckSettings())
        let directory = try await UpdateChecker(source: MirrorReleaseSource(location: .directory(mirror.path), client: nil), now: { 0 })
            .check(installed: installed, settings: CheckSettings())
        let root = mirror.path
        let files = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .blocking { request in
            guard let data = FileManager.default.contents(atPath: root + request.path) else { return .text("missing\n", status: 404) }
            return APIResponse(status: 200, body: Array(data))
        })
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
