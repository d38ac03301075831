import Foundation
import NIOHTTP1
import UpkeepCore
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// The k3s binaries a rollout installs (and, for air-gapped nodes, the release's images
/// tarballs), fetched once per (version, arch, asset) from GitHub or a mirror, verified against
/// the release's `sha256sum-<arch>.txt`, and kept by digest under `<stateDir>/artifacts`
/// (directories 0700, blobs 0644, written by atomic rename).
///
/// With `publishedDigests` (GitHub as the source) the checksum file's digest must also be the
/// one the releases API reports for the asset; an asset the API lists without one (older
/// releases) rests on the checksum file alone, which the artifact records (`crossCheck`).
/// A blob is stored only after its digest matched: a mismatch is an `ArtifactError` that names
/// the asset and both digests and leaves nothing behind. A stored blob is hashed again each time
/// the cache hands it out (right before it is streamed to an agent), so a blob damaged or
/// tampered with after it was stored is dropped and fetched again instead of reaching a node
/// that was drained for it. The cache never exceeds
/// `cacheBytesMax` (least recently used blobs go first; the one just stored stays), and never
/// downloads one (version, arch) twice at once.
public actor ArtifactCache {
    /// Which asset of a release.
    public enum Asset: String, Hashable, Sendable {
        case binary
        /// `k3s-airgap-images-<arch>.tar(.zst|.gz)`, whichever the checksum file lists first in
        /// `Arch.airgapImagesAssetNames` order (https://docs.k3s.io/installation/airgap).
        case airgapImages
    }

    /// One (version, arch, asset) the rollout needs.
    public struct Key: Hashable, Sendable, CustomStringConvertible {
        public var version: K3sVersion
        public var arch: Arch
        public var asset: Asset
        public init(version: K3sVersion, arch: Arch, asset: Asset = .binary) {
            self.version = version
            self.arch = arch
            self.asset = asset
        }
        public var description: String { "\(version) \(arch.rawValue)\(asset == .binary ? "" : " air-gap images")" }
    }

    /// An artifact refused for its digest, by why (docs/metrics.md).
    public enum Refusal: String, CaseIterable, Hashable, Sendable {
        /// The download does not hash to its release's checksum file.
        case checksumMismatch = "checksum_mismatch"
        /// The releases API reports another digest than the checksum file, or does not list the asset.
        case publishedDigest = "published_digest"
        /// The mirror's index is missing, unsigned, or not signed by the configured key.
        case indexSignature = "index_signature"
        /// The signed index does not list the file, or lists another digest.
        case indexDigest = "index_digest"
        /// A stored blob no longer hashes to its digest when it is handed out: dropped, fetched again.
        case cachedBlob = "cached_blob"
    }

    /// Every artifact refused for its digest since the process started, by why: `upkeep serve`
    /// exports it as `upkeep_artifact_refusals_total{reason}`; a one-shot command's error says it.
    public static let refusals = LimitTally<Refusal>()

    public static let checksumBytesMax = 256 << 10
    public static let artifactBytesMaxDefault = 512 << 20
    public static let cacheBytesMaxDefault: Int64 = 4 << 30

    /// `<stateDir>/artifacts`.
    public nonisolated let directory: String
    public nonisolated let source: ArtifactSource
    public nonisolated let artifactBytesMax: Int
    public nonisolated let cacheBytesMax: Int64
    private let client: HTTPClient?
    /// The releases API's digests, checked beside the checksum file (GitHub as the source).
    public nonisolated let publishedDigests: (any PublishedDigests)?
    /// For a mirror: the key its signed index must verify with (`MirrorIndex`).
    public nonisolated let indexKey: MirrorIndex.TrustedKey?
    /// Digests the API gave, by tag, read once per cache instance.
    private var published: [String: [String: String?]] = [:]
    private var inFlight: [Key: Task<Artifact, any Error>] = [:]
    /// Blobs this cache has hashed since it was opened; others are hashed once before use.
    private var verified: Set<String> = []

    /// `client` is needed for an `.http` source; make one with `makeHTTPClient` so its
    /// response limit fits a binary. `publishedDigests`: when the source is GitHub (or a server
    /// playing it), its releases API, whose digest each artifact must match too.
    public init(stateDirectory: String, source: ArtifactSource, client: HTTPClient?,
                publishedDigests: (any PublishedDigests)? = nil, indexKey: MirrorIndex.TrustedKey? = nil,
                artifactBytesMax: Int = ArtifactCache.artifactBytesMaxDefault,
                cacheBytesMax: Int64 = ArtifactCache.cacheBytesMaxDefault) throws(ArtifactError) {
        if case .http = source { precondition(client != nil, "an HTTP artifact source needs an HTTP client") }
        directory = "\(stateDirectory)/artifacts"
        self.source = source
        self.client = client
        self.publishedDigests = publishedDigests
        self.indexKey = indexKey
        self.artifactBytesMax = artifactBytesMax
        self.cacheBytesMax = max(cacheBytesMax, Int64(artifactBytesMax))
        for sub in ["", "/sha256", "/index", "/tmp"] { try ArtifactStorage.makeDirectory(directory + sub) }
    }

    /// An HTTP client for downloads: redirects followed by the cache, a body limit of
    /// `artifactBytesMax`, a generous response time for a large binary.
    public static func makeHTTPClient(trust: TrustRoots = .system, artifactBytesMax: Int = ArtifactCache.artifactBytesMaxDefault,
                                      responseTimeoutSeconds: Double = 900, userAgent: String = "upkeep") throws -> HTTPClient {
        try HTTPClient(configuration: HTTPClient.Configuration(responseTimeoutSeconds: responseTimeoutSeconds, responseBytesMax: artifactBytesMax,
                                                               connectionsPerOriginMax: 2, userAgent: userAgent),
                       trust: trust)
    }

    nonisolated var blobDirectory: String { "\(directory)/sha256" }
    nonisolated func blobPath(_ digest: String) -> String { "\(blobDirectory)/\(digest)" }
    nonisolated func indexPath(_ key: Key) -> String {
        "\(directory)/index/\(key.version)_\(key.arch.rawValue)\(key.asset == .binary ? "" : "_airgap-images").json"
    }

    /// The verified binary (or `asset`) for `version` on `arch`, from the cache or fetched now.
    public func artifact(version: K3sVersion, arch: Arch, asset: Asset = .binary) async throws -> Artifact {
        let key = Key(version: version, arch: arch, asset: asset)
        if let cached = cached(version: version, arch: arch, asset: asset), crossChecked(cached),
           try intact(cached.path, digest: cached.sha256, again: true) {
            ArtifactStorage.touch(cached.path)
            return cached
        }
        if let running = inFlight[key] { return try await running.value }
        let task = Task { try await self.fetch(key) }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        return try await task.value
    }

    /// Fetches every key not cached yet (one at a time: downloads are large), so a rollout can
    /// stage ahead. Returns what it has; throws the first failure after trying every key.
    @discardableResult
    public func prefetch(_ keys: [Key]) async throws -> [Artifact] {
        var artifacts: [Artifact] = []
        var firstError: (any Error)?
        for key in Array(Set(keys)).sorted(by: { ($0.version, $0.arch) < ($1.version, $1.arch) }) {
            do { artifacts.append(try await artifact(version: key.version, arch: key.arch, asset: key.asset)) } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return artifacts
    }

    /// The cached artifact, without touching the network; nil when it is not (or no longer) here.
    public nonisolated func cached(version: K3sVersion, arch: Arch, asset: Asset = .binary) -> Artifact? {
        let key = Key(version: version, arch: arch, asset: asset)
        guard let data = FileManager.default.contents(atPath: indexPath(key)),
              let artifact = try? JSONDecoder().decode(Artifact.self, from: data),
              artifact.version == version, artifact.arch == arch,
              ArtifactStorage.size(blobPath(artifact.sha256)) == artifact.bytes else { return nil }
        return artifact
    }

    /// Bytes held by blobs now.
    public nonisolated var storedBytes: Int64 { ArtifactStorage.entries(blobDirectory).reduce(0) { $0 + $1.bytes } }

    // MARK: - Fetching

    /// Whether a cached artifact was vouched for as this cache requires: one stored before the
    /// releases API's digest was checked goes through `fetch` again (the blob stays; only the
    /// digest is compared).
    private nonisolated func crossChecked(_ artifact: Artifact) -> Bool {
        if indexKey != nil { return artifact.crossCheck == .signedIndex }
        guard publishedDigests != nil else { return true }
        return artifact.crossCheck == .publishedDigest || artifact.crossCheck == .noPublishedDigest
    }

    /// The mirror's index, its signature verified with `indexKey`; nil without a key.
    private func signedIndex() async throws -> MirrorIndex? {
        guard let indexKey else { return nil }
        let refused = { (index: String, signature: String, reason: String) in
            ArtifactError.mirrorIndexRefused(index: index, signature: signature, keyFile: indexKey.file, reason: reason)
        }
        let indexName = MirrorIndex.fileName, signatureName = MirrorIndex.signatureName
        let index: [UInt8], indexSource: String
        do {
            (index, indexSource) = try await download(relative: indexName, encoded: indexName, asset: indexName, bytesMax: MirrorIndex.bytesMax)
        } catch let error as ArtifactError where !error.isTransient {
            throw refused("\(source)/\(indexName)", "\(source)/\(signatureName)", "the mirror has no readable index: \(error)")
        }
        let signature: [UInt8], signatureSource: String
        do {
            (signature, signatureSource) = try await download(relative: signatureName, encoded: signatureName, asset: signatureName,
                                                              bytesMax: MirrorIndex.signatureBytesMax)
        } catch let error as ArtifactError where !error.isTransient {
            throw refused(indexSource, "\(source)/\(signatureName)", "the index is not signed: \(error)")
        }
        return try MirrorIndex.verified(index, signature: signature, key: indexKey.key, keyFile: indexKey.file,
                                        source: indexSource, signatureSource: signatureSource)
    }

    /// The releases API's word on `asset` of `tag` against the checksum file's `expected`.
    private func crossCheck(tag: String, asset: String, expected: String, checksumSource: String) async throws -> Artifact.CrossCheck {
        guard let publishedDigests else { return .checksumFileAlone }
        let digests: [String: String?]
        if let known = published[tag] {
            digests = known
        } else {
            digests = try await publishedDigests.assetDigests(tag: tag)
            published[tag] = digests
        }
        guard let listed = digests[asset] else {
            throw ArtifactError.notPublished(asset: asset, source: checksumSource, digests: "\(publishedDigests) for \(tag)")
        }
        guard let digest = listed else { return .noPublishedDigest }
        guard digest == expected else {
            throw ArtifactError.publishedDigestMismatch(asset: asset, source: checksumSource, checksumFile: expected,
                                                        digests: "\(publishedDigests) for \(tag)", published: digest)
        }
        return .publishedDigest
    }

    /// `fetchVerified`, counting each refusal for a digest in `refusals`.
    private func fetch(_ key: Key) async throws -> Artifact {
        do {
            return try await fetchVerified(key)
        } catch let error as ArtifactError {
            switch error {
            case .checksumMismatch: Self.refusals.add(.checksumMismatch)
            case .publishedDigestMismatch, .notPublished: Self.refusals.add(.publishedDigest)
            case .mirrorIndexRefused: Self.refusals.add(.indexSignature)
            case .notInMirrorIndex: Self.refusals.add(.indexDigest)
            case .checksumNotListed, .notFound, .unavailable, .tooLarge, .storage: break
            }
            throw error
        }
    }

    private func fetchVerified(_ key: Key) async throws -> Artifact {
        let tag = key.version.description
        let checksumAsset = key.arch.checksumAssetName
        let index = try await signedIndex()
        let (checksumBytes, checksumSource) = try await download(tag: tag, asset: checksumAsset, bytesMax: Self.checksumBytesMax)
        try index?.require(ArtifactSource.relativePath(tag: tag, asset: checksumAsset, encoded: false), digest: SHA256.hex(checksumBytes))
        let checksums = String(decoding: checksumBytes, as: UTF8.self)
        let candidates = key.asset == .binary ? [key.arch.binaryAssetName] : key.arch.airgapImagesAssetNames
        guard let (asset, expected) = candidates.lazy.compactMap({ name in ChecksumFile.digest(of: name, in: checksums).map { (name, $0) } }).first else {
            throw ArtifactError.checksumNotListed(asset: candidates.joined(separator: " or "), checksumFile: checksumSource)
        }
        // Before any download: a checksum file that disagrees with the publisher (or the signed
        // index) is enough to refuse.
        let vouched: Artifact.CrossCheck
        if let index {
            try index.require(ArtifactSource.relativePath(tag: tag, asset: asset, encoded: false), digest: expected)
            vouched = .signedIndex
        } else {
            vouched = try await crossCheck(tag: tag, asset: asset, expected: expected, checksumSource: checksumSource)
        }
        let path = blobPath(expected)
        if let bytes = ArtifactStorage.size(path), try intact(path, digest: expected) {
            // Stored under this digest by an earlier fetch (another version can share a binary).
            ArtifactStorage.touch(path)
            return try record(Artifact(version: key.version, arch: key.arch, assetName: asset, sha256: expected, bytes: bytes, path: path,
                                       crossCheck: vouched), as: key)
        }
        let (binary, binarySource) = try await download(tag: tag, asset: asset, bytesMax: artifactBytesMax)
        let actual = SHA256.hex(binary)
        guard actual == expected else {
            throw ArtifactError.checksumMismatch(asset: asset, source: binarySource, expected: expected, actual: actual)
        }
        try ArtifactStorage.writeAtomically(binary, to: path, mode: 0o644, scratch: "\(directory)/tmp")
        verified.insert(expected)
        let artifact = try record(Artifact(version: key.version, arch: key.arch, assetName: asset, sha256: expected,
                                           bytes: Int64(binary.count), path: path, crossCheck: vouched), as: key)
        evict(keeping: expected)
        return artifact
    }

    /// Whether the blob at `path` still hashes to `digest`: checked once per blob and cache
    /// instance, or `again` every time (a blob about to be handed out). A damaged one (disk
    /// error, someone's edit) is removed, to be fetched again.
    private func intact(_ path: String, digest: String, again: Bool = false) throws(ArtifactError) -> Bool {
        if !again && verified.contains(digest) { return true }
        guard let bytes = try ArtifactStorage.read(path, bytesMax: artifactBytesMax) else { return false }
        guard SHA256.hex(bytes) == digest else {
            Self.refusals.add(.cachedBlob)
            unlink(path)
            return false
        }
        verified.insert(digest)
        return true
    }

    private func record(_ artifact: Artifact, as key: Key) throws(ArtifactError) -> Artifact {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data: Data
        do { data = try encoder.encode(artifact) } catch { preconditionFailure("an Artifact always encodes: \(error)") }
        try ArtifactStorage.writeAtomically(Array(data), to: indexPath(key), mode: 0o600,
                                            scratch: "\(directory)/tmp")
        return artifact
    }

    /// Removes least recently used blobs until the cache fits, never `keeping`.
    private func evict(keeping digest: String) {
        var entries = ArtifactStorage.entries(blobDirectory)
        var total = entries.reduce(0) { $0 + $1.bytes }
        entries.sort { $0.modified < $1.modified }
        for entry in entries where total > cacheBytesMax && entry.name != digest {
            if unlink("\(blobDirectory)/\(entry.name)") == 0 { total -= entry.bytes }
        }
    }

    /// The asset's bytes and where they came from (for messages).
    private func download(tag: String, asset: String, bytesMax: Int) async throws -> ([UInt8], String) {
        try await download(relative: ArtifactSource.relativePath(tag: tag, asset: asset, encoded: false),
                           encoded: ArtifactSource.relativePath(tag: tag, asset: asset, encoded: true), asset: asset, bytesMax: bytesMax)
    }

    /// The file at `relative` below the source (`encoded` in a URL).
    private func download(relative: String, encoded: String, asset: String, bytesMax: Int) async throws -> ([UInt8], String) {
        switch source {
        case .directory(let root):
            let path = "\(root)/\(relative)"
            guard let bytes = try ArtifactStorage.read(path, bytesMax: bytesMax) else {
                throw ArtifactError.notFound(asset: asset, source: path)
            }
            return (bytes, path)
        case .http(let base):
            guard let client else { preconditionFailure("an HTTP artifact source needs an HTTP client") }
            let url = base.appending(path: encoded)
            var headers = HTTPHeaders()
            headers.add(name: "Accept", value: "application/octet-stream")
            let response: HTTPResponse
            do {
                response = try await client.send(HTTPRequest(url: url, headers: headers, redirects: .follow(max: 5)))
            } catch HTTPClientError.responseTooLarge {
                throw ArtifactError.tooLarge(asset: asset, source: url.description, bytesMax: min(bytesMax, client.configuration.responseBytesMax))
            } catch let error as HTTPClientError {
                throw ArtifactError.unavailable(asset: asset, source: url.description, reason: error.description)
            }
            if response.status == 404 { throw ArtifactError.notFound(asset: asset, source: url.description) }
            guard response.isSuccess else {
                throw ArtifactError.unavailable(asset: asset, source: url.description, reason: "HTTP \(response.status)")
            }
            guard response.body.count <= bytesMax else { throw ArtifactError.tooLarge(asset: asset, source: url.description, bytesMax: bytesMax) }
            return (response.body, url.description)
        }
    }
}
