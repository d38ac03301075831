import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepSandbox
import UpkeepTestSupport
import UpkeepUpdates

/// The artifact cache checks each k3s binary against the releases API's `assets[].digest` as
/// well as the checksum file, with the sandbox release server playing GitHub (issue 19).
@Suite(.serialized, .timeLimit(.minutes(1)))
struct PublishedDigestTests {
    static let tag = "v1.31.2+k3s1"

    /// The release server on a loopback port, its faults switched by the test.
    final class Rig: Sendable {
        let faults = NIOLockedValueBox(ReleaseFaults())
        let server: ReleaseServer

        init() async throws {
            let faults = faults
            let catalog = ReleaseCatalog(k3sBase: PublishedDigestTests.tag, hostBinary: "/nonexistent/upkeep-sandbox",
                                         faults: { var all = SandboxFaults(); all.releaseFaults = faults.withLockedValue { $0 }; return all },
                                         now: Date().timeIntervalSince1970)
            server = try await ReleaseServer.start(catalog: catalog, host: "127.0.0.1", group: MultiThreadedEventLoopGroup.singleton)
        }

        func cache(_ state: TemporaryDirectory, digests: Bool = true) throws -> ArtifactCache {
            let base = try HTTPURL(server.baseURL)
            let api = GitHubReleaseSource(client: try HTTPClient(configuration: .init(responseTimeoutSeconds: 5)),
                                          endpoints: .init(api: base, channelServer: base))
            return try ArtifactCache(stateDirectory: state.path, source: .http(base), client: try ArtifactCache.makeHTTPClient(artifactBytesMax: 1 << 20),
                                     publishedDigests: digests ? GitHubPublishedDigests(releases: api) : nil)
        }

        var published: String { server.catalog.releases.first { $0.tag == PublishedDigestTests.tag }!.assets.first { $0.name == "k3s" }!.sha256 }
    }

    @Test func aBinaryMatchingTheChecksumFileAndThePublishedDigestIsVouchedForByBoth() async throws {
        let rig = try await Rig()
        let state = try TemporaryDirectory()
        let artifact = try await rig.cache(state).artifact(version: try K3sVersion(Self.tag), arch: .amd64)
        #expect(artifact.sha256 == rig.published && artifact.crossCheck == .publishedDigest)
        #expect(artifact.vouchedFor.contains("releases API"))
        #expect(rig.server.catalog.requests.contains { $0.path.hasSuffix("/releases/tags/\(Self.tag)") && $0.status == 200 })
        await rig.server.close()
    }

    /// The download origin serves a binary and a checksum file that agree with each other, but
    /// not with what the releases API says was uploaded: refused, both digests and the source
    /// named, nothing kept.
    @Test func aPublishedDigestThatDisagreesRefusesTheArtifact() async throws {
        let rig = try await Rig()
        rig.faults.withLockedValue { $0.wrongDigests = true }
        let state = try TemporaryDirectory()
        let cache = try rig.cache(state)
        let refusedBefore = ArtifactCache.refusals.count(.publishedDigest)
        defer { #expect(ArtifactCache.refusals.count(.publishedDigest) > refusedBefore, "counted (upkeep_artifact_refusals_total)") }
        do {
            let artifact = try await cache.artifact(version: try K3sVersion(Self.tag), arch: .amd64)
            Issue.record("accepted although the API's digest differs: \(artifact)")
        } catch let error as ArtifactError {
            guard case let .publishedDigestMismatch(asset, source, checksumFile, digests, published) = error else {
                Issue.record("expected publishedDigestMismatch, got \(error)")
                return
            }
            #expect(asset == "k3s" && checksumFile == rig.published && published != rig.published && published.count == 64)
            #expect(source.contains(rig.server.baseURL) && digests.contains(rig.server.baseURL))
            #expect(error.description.contains(checksumFile) && error.description.contains(published) && error.description.contains(source))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256").isEmpty)
        #expect(cache.cached(version: try K3sVersion(Self.tag), arch: .amd64) == nil)
        await rig.server.close()
    }

    /// A binary cached before the API was consulted is not handed out on the checksum file's
    /// word alone once the cache checks digests.
    @Test func aBinaryCachedWithoutTheDigestIsCheckedAgainstIt() async throws {
        let rig = try await Rig()
        let state = try TemporaryDirectory()
        let version = try K3sVersion(Self.tag)
        let earlier = try await rig.cache(state, digests: false).artifact(version: version, arch: .amd64)
        #expect(earlier.crossCheck == Artifact.CrossCheck.checksumFileAlone)
        rig.faults.withLockedValue { $0.wrongDigests = true }
        await #expect(throws: ArtifactError.self) { try await rig.cache(state).artifact(version: version, arch: .amd64) }
        rig.faults.withLockedValue { $0.wrongDigests = nil }
        #expect(try await rig.cache(state).artifact(version: version, arch: .amd64).crossCheck == .publishedDigest)
        await rig.server.close()
    }

    /// Releases uploaded before GitHub computed digests: the checksum file alone, and the
    /// artifact says so.
    @Test func withoutAPublishedDigestTheChecksumFileAloneVouchesAndSaysSo() async throws {
        let rig = try await Rig()
        rig.faults.withLockedValue { $0.noDigests = true }
        let state = try TemporaryDirectory()
        let artifact = try await rig.cache(state).artifact(version: try K3sVersion(Self.tag), arch: .arm64)
        #expect(artifact.crossCheck == .noPublishedDigest)
        #expect(artifact.vouchedFor.contains("gives no digest"))
        await rig.server.close()
    }
}
