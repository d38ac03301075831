import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepSandbox
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The sandbox release server (GitHub's download URLs, 302 to a blob) on a loopback port.
final class ReleaseServerRig: @unchecked Sendable {
    let catalog: ReleaseCatalog
    let server: HTTPServer
    let corrupt = NIOLockedValueBox(false)
    let requests = NIOLockedValueBox(0)
    var base: String { "http://127.0.0.1:\(server.port)" }

    init() async throws {
        let corrupt = corrupt
        let catalog = ReleaseCatalog(k3sBase: v1, hostBinary: "/nonexistent/upkeep-sandbox",
                                     faults: { var faults = SandboxFaults(); faults.corruptBinaries = corrupt.withLockedValue { $0 }; return faults },
                                     now: Date().timeIntervalSince1970)
        self.catalog = catalog
        let baseBox = NIOLockedValueBox("")
        let requests = requests
        server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking { request in
            requests.withLockedValue { $0 += 1 }
            return catalog.handle(request, baseURL: baseBox.withLockedValue { $0 }, now: Date().timeIntervalSince1970)
        })
        baseBox.withLockedValue { $0 = "http://127.0.0.1:\(server.port)" }
    }

    func asset(_ tag: String, _ name: String) -> ReleaseCatalog.Asset? {
        catalog.releases.first { $0.tag == tag }?.assets.first { $0.name == name }
    }
}

@Suite(.serialized) struct ArtifactCacheTests {
    private func mode(_ path: String) -> mode_t {
        var info = stat()
        stat(path, &info)
        return info.st_mode & 0o777
    }

    private func cache(_ state: TemporaryDirectory, _ rig: ReleaseServerRig, cacheBytesMax: Int64 = ArtifactCache.cacheBytesMaxDefault,
                       artifactBytesMax: Int = ArtifactCache.artifactBytesMaxDefault) throws -> ArtifactCache {
        try ArtifactCache(stateDirectory: state.path, source: .http(try HTTPURL(rig.base)),
                          client: try ArtifactCache.makeHTTPClient(artifactBytesMax: 1 << 20),
                          artifactBytesMax: artifactBytesMax, cacheBytesMax: cacheBytesMax)
    }

    /// For air-gapped nodes: the release's images tarball, the format k3s recommends first
    /// (`.tar.zst`) of those its checksum file lists, cached beside the binary under its own index.
    @Test func fetchesTheAirgapImagesTarballTheChecksumFileListsFirst() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let cache = try cache(state, rig)
        let version = try K3sVersion(v1)
        let images = try await cache.artifact(version: version, arch: .arm64, asset: .airgapImages)
        let published = try #require(rig.asset(v1, "k3s-airgap-images-arm64.tar.zst"))
        #expect(images.assetName == "k3s-airgap-images-arm64.tar.zst" && images.sha256 == published.sha256)
        #expect(FileManager.default.contents(atPath: images.path) == Data(published.content))
        let binary = try await cache.artifact(version: version, arch: .arm64)
        #expect(binary.assetName == "k3s-arm64" && cache.cached(version: version, arch: .arm64, asset: .airgapImages) == images)
        #expect(cache.cached(version: version, arch: .arm64) == binary)
    }

    @Test func fetchesVerifiesAndReusesByDigestFromGitHubDownloadURLs() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let cache = try cache(state, rig)
        let version = try K3sVersion(v1)
        let artifact = try await cache.artifact(version: version, arch: .amd64)
        let published = try #require(rig.asset(v1, "k3s"))
        #expect(artifact.sha256 == published.sha256 && artifact.assetName == "k3s" && artifact.bytes == Int64(published.content.count))
        #expect(artifact.path == "\(state.path)/artifacts/sha256/\(published.sha256)")
        #expect(FileManager.default.contents(atPath: artifact.path) == Data(published.content))
        #expect(mode(artifact.path) == 0o644 && mode("\(state.path)/artifacts") == 0o700 && mode("\(state.path)/artifacts/sha256") == 0o700)
        let arm = try await cache.artifact(version: version, arch: .arm)
        let armPublished = try #require(rig.asset(v1, "k3s-armhf"))
        #expect(arm.assetName == "k3s-armhf" && arm.sha256 == armPublished.sha256)

        // Again, and from a new cache over the same state directory: no request reaches the server.
        let before = rig.requests.withLockedValue { $0 }
        #expect(try await cache.artifact(version: version, arch: .amd64) == artifact)
        let reopened = try self.cache(state, rig)
        #expect(reopened.cached(version: version, arch: .amd64) == artifact)
        #expect(try await reopened.artifact(version: version, arch: .amd64) == artifact)
        #expect(rig.requests.withLockedValue { $0 } == before)

        // Two callers wanting the same binary at once share one fetch. The sandbox publishes one
        // script for every arch, so only the checksum file is read (a 302 to its blob, 2
        // requests): the binary is already here under its digest.
        async let first = cache.artifact(version: version, arch: .arm64)
        async let second = cache.artifact(version: version, arch: .arm64)
        let both = try await [first, second]
        #expect(both[0] == both[1] && both[0].assetName == "k3s-arm64")
        #expect(rig.requests.withLockedValue { $0 } == before + 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256").count == 1)
        await rig.server.close()
    }

    /// One byte flipped in place: same size, other digest.
    static func flipAByte(of path: String) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 10)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 10)
        try handle.write(contentsOf: [byte ^ 0x01])
        try handle.close()
    }

    @Test func aDamagedCachedBlobIsFetchedAgain() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let version = try K3sVersion(v1)
        let artifact = try await cache(state, rig).artifact(version: version, arch: .amd64)
        try Self.flipAByte(of: artifact.path)
        let before = rig.requests.withLockedValue { $0 }
        let again = try await cache(state, rig).artifact(version: version, arch: .amd64)
        #expect(again == artifact)
        #expect(FileManager.default.contents(atPath: artifact.path) == Data(try #require(rig.asset(v1, "k3s")).content))
        #expect(rig.requests.withLockedValue { $0 } > before)
        await rig.server.close()
    }

    /// The same cache instance, which verified the blob already: a blob tampered with after that
    /// is caught before it is handed out again (issue 19: only the agent caught it, after its
    /// node had been drained), and fetched again.
    @Test func aBlobTamperedWithAfterItWasVerifiedIsNotHandedOut() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let version = try K3sVersion(v1)
        let cache = try cache(state, rig)
        let artifact = try await cache.artifact(version: version, arch: .amd64)
        try Self.flipAByte(of: artifact.path)
        let refusedBefore = ArtifactCache.refusals.count(.cachedBlob)
        let again = try await cache.artifact(version: version, arch: .amd64)
        #expect(again == artifact)
        #expect(ArtifactCache.refusals.count(.cachedBlob) > refusedBefore, "the re-verification's refusal is counted (upkeep_artifact_refusals_total)")
        let served = try #require(FileManager.default.contents(atPath: again.path))
        #expect(SHA256.hex(Array(served)) == artifact.sha256, "the tampered blob was handed out")
        await rig.server.close()
    }

    @Test func aCorruptedBinaryIsATypedErrorAndLeavesNothing() async throws {
        let rig = try await ReleaseServerRig()
        rig.corrupt.withLockedValue { $0 = true }
        let state = try TemporaryDirectory()
        let cache = try cache(state, rig)
        let expected = try #require(rig.asset(v1, "k3s")).sha256
        do {
            let artifact = try await cache.artifact(version: try K3sVersion(v1), arch: .amd64)
            Issue.record("a corrupted binary was accepted: \(artifact)")
        } catch let error as ArtifactError {
            guard case let .checksumMismatch(asset, source, wanted, actual) = error else {
                Issue.record("expected checksumMismatch, got \(error)")
                return
            }
            #expect(asset == "k3s" && wanted == expected && actual != expected && actual.count == 64)
            #expect(source.contains("/blobs/") || source.contains("/releases/download/"))
            #expect(error.description.contains(expected) && error.description.contains(actual) && error.description.contains("k3s"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/tmp").isEmpty)
        #expect(cache.cached(version: try K3sVersion(v1), arch: .amd64) == nil)
        // Fixed at the source: the next fetch succeeds.
        rig.corrupt.withLockedValue { $0 = false }
        #expect(try await cache.artifact(version: try K3sVersion(v1), arch: .amd64).sha256 == expected)
        await rig.server.close()
    }

    @Test func missingReleasesAndArchitecturesAreNamed() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let cache = try cache(state, rig)
        await #expect { try await cache.artifact(version: try K3sVersion("v1.19.1+k3s1"), arch: .amd64) } throws: { error in
            guard case .notFound(let asset, let source) = error as? ArtifactError else { return false }
            return asset == "sha256sum-amd64.txt" && source.contains("/k3s-io/k3s/releases/download/v1.19.1%2Bk3s1/")
        }
        // The sandbox publishes no s390x binaries.
        await #expect { try await cache.artifact(version: try K3sVersion(v1), arch: .s390x) } throws: { error in
            guard case .notFound(let asset, _) = error as? ArtifactError else { return false }
            return asset == "sha256sum-s390x.txt"
        }
        // An artifact larger than allowed is refused before anything is stored.
        let small = try self.cache(state, rig, artifactBytesMax: 64)
        await #expect { try await small.artifact(version: try K3sVersion(v1), arch: .arm64) } throws: { error in
            if case .tooLarge(let asset, _, 64) = error as? ArtifactError { asset == "k3s-arm64" } else { false }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256").isEmpty)
        await rig.server.close()
    }

    @Test func prefetchFillsTheCacheWithinItsBound() async throws {
        let rig = try await ReleaseServerRig()
        let state = try TemporaryDirectory()
        let size = Int64(try #require(rig.asset(v1, "k3s")).content.count)
        // Room for two binaries: the oldest goes when a third arrives.
        let cache = try cache(state, rig, cacheBytesMax: size * 2 + size / 2, artifactBytesMax: Int(size) + 16)
        let versions = rig.catalog.k3sVersions.filter { !$0.contains("-") }.prefix(3)
        #expect(versions.count == 3)
        let keys = try versions.map { ArtifactCache.Key(version: try K3sVersion($0), arch: .amd64) }
        let artifacts = try await cache.prefetch(keys)
        #expect(artifacts.count == 3)
        #expect(cache.storedBytes <= cache.cacheBytesMax)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256").count == 2)
        // The newest stays; an evicted one is fetched again when asked for.
        #expect(cache.cached(version: keys[2].version, arch: .amd64) != nil)
        let evicted = try #require(keys.first { cache.cached(version: $0.version, arch: .amd64) == nil })
        #expect(try await cache.artifact(version: evicted.version, arch: .amd64).version == evicted.version)
        await rig.server.close()
    }

    @Test func aMirrorDirectoryServesTheSameLayout() async throws {
        let node = try AgentNodeFixture(name: "agent-1", liveVersion: v1)
        let mirror = try TemporaryDirectory()
        try node.publish(v2, into: mirror.path)
        try node.publish(v1, into: mirror.path, corrupt: true)
        let state = try TemporaryDirectory()
        let cache = try ArtifactCache(stateDirectory: state.path, source: .directory(mirror.path), client: nil)
        let artifact = try await cache.artifact(version: try K3sVersion(v2), arch: .amd64)
        #expect(FileManager.default.contents(atPath: artifact.path) == Data(try node.binaryScript(v2).utf8))
        await #expect { try await cache.artifact(version: try K3sVersion(v1), arch: .amd64) } throws: { error in
            if case .checksumMismatch(let asset, let source, _, _) = error as? ArtifactError { asset == "k3s" && source.hasPrefix(mirror.path) } else { false }
        }
        await #expect { try await cache.artifact(version: try K3sVersion(v2), arch: .arm64) } throws: { error in
            if case .notFound("sha256sum-arm64.txt", _) = error as? ArtifactError { true } else { false }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state.path)/artifacts/sha256") == [artifact.sha256])
    }
}
