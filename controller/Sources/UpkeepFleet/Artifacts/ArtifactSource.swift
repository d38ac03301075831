import UpkeepCore
import UpkeepHTTP
import UpkeepPKI

/// Where k3s release assets come from. Both kinds use GitHub's download layout,
/// `<base>/k3s-io/k3s/releases/download/<tag>/<asset>`, so a mirror is made by copying the
/// assets under the same relative paths (`wget -x` style) and needs no other index.
public enum ArtifactSource: Sendable, Equatable, CustomStringConvertible {
    /// GitHub itself (`https://github.com`), the sandbox release server, or an HTTP(S) mirror.
    case http(HTTPURL)
    /// An air-gapped mirror directory.
    case directory(String)

    public static let github = ArtifactSource.http(HTTPURL(scheme: .https, host: "github.com"))
    public static let repository = "k3s-io/k3s"

    /// The download base that goes with a releases API base: GitHub's API lives on
    /// `api.github.com` but its downloads on `github.com`; any other server (GitHub Enterprise
    /// behind one origin, the sandbox release server) serves both.
    public static func downloadBase(forAPI api: HTTPURL) -> HTTPURL {
        api.host == "api.github.com" ? HTTPURL(scheme: .https, host: "github.com") : HTTPURL(scheme: api.scheme, host: api.host, port: api.port)
    }

    /// The path of `asset` of release `tag` below the base, with the tag's `+` written `%2B`
    /// as GitHub writes it.
    public static func relativePath(tag: String, asset: String, encoded: Bool) -> String {
        let tagSegment = encoded ? HTTPURL.percentEncode(tag) : tag
        return "\(repository)/releases/download/\(tagSegment)/\(asset)"
    }

    /// The source `upkeep.yaml`'s `releases` section names: the mirror when set (a URL or a
    /// directory), else the downloads that go with `githubAPI`.
    public static func configured(mirror: String?, githubAPI: String) throws -> ArtifactSource {
        if let mirror {
            if mirror.hasPrefix("http://") || mirror.hasPrefix("https://") { return .http(try HTTPURL(mirror)) }
            return .directory(mirror)
        }
        return .http(downloadBase(forAPI: try HTTPURL(githubAPI)))
    }

    public var description: String {
        switch self {
        case .http(let base): base.description
        case .directory(let path): path
        }
    }
}

/// One verified k3s binary in the cache.
public struct Artifact: Codable, Equatable, Sendable {
    public var version: K3sVersion
    public var arch: Arch
    /// The release asset it came from (`k3s`, `k3s-arm64`, `k3s-armhf`).
    public var assetName: String
    /// SHA-256 as `sha256sum` prints it, checked against the release's checksum file.
    public var sha256: String
    public var bytes: Int64
    /// `<stateDir>/artifacts/sha256/<sha256>`; read-only for everyone but the cache.
    public var path: String
    /// What else vouched for `sha256` besides the checksum file; nil in index files written
    /// before it was recorded.
    public var crossCheck: CrossCheck?

    /// The second opinion on an artifact's digest, besides the checksum file from the same place.
    public enum CrossCheck: String, Codable, Equatable, Sendable {
        /// The releases API's `assets[].digest` matched.
        case publishedDigest
        /// The releases API lists the asset without a digest (releases uploaded before GitHub
        /// computed them): the checksum file alone vouched for it.
        case noPublishedDigest
        /// The operator-signed mirror index listed the file with this digest.
        case signedIndex
        /// No second source was configured (a mirror without `indexKey`).
        case checksumFileAlone
    }

    public init(version: K3sVersion, arch: Arch, assetName: String, sha256: String, bytes: Int64, path: String,
                crossCheck: CrossCheck? = nil) {
        self.version = version
        self.arch = arch
        self.assetName = assetName
        self.sha256 = sha256
        self.bytes = bytes
        self.path = path
        self.crossCheck = crossCheck
    }
}

extension Artifact {
    /// What vouched for the digest, as `apply` prints it after the digest.
    public var vouchedFor: String {
        switch crossCheck {
        case .publishedDigest: " (checksum file and the releases API's digest)"
        case .noPublishedDigest: " (checksum file only: the releases API gives no digest for this release)"
        case .signedIndex: " (checksum file and the signed mirror index)"
        case .checksumFileAlone?, nil: " (checksum file)"
        }
    }
}

/// A second statement of what a release's assets hash to, from another origin than the
/// downloads: GitHub's releases API reports `assets[].digest` ("sha256:<hex>"), computed by
/// GitHub when the asset was uploaded (https://docs.github.com/en/rest/releases/assets). A
/// checksum file swapped together with the binary at the download origin, or on the way, does
/// not change it.
public protocol PublishedDigests: Sendable, CustomStringConvertible {
    /// Each asset the release `tag` lists, with its SHA-256 as 64 lowercase hex digits, or nil
    /// when the API gives none for it. Throws `ArtifactError` (`unavailable` when the API could
    /// not be read this time, `notFound` when it has no such release).
    func assetDigests(tag: String) async throws(ArtifactError) -> [String: String?]
}

/// Why an artifact could not be had. Everything but `unavailable` is a fact about the release
/// or the mirror that retrying will not change.
public enum ArtifactError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes served for `asset` do not hash to what the release's checksum file says.
    /// Nothing was kept.
    case checksumMismatch(asset: String, source: String, expected: String, actual: String)
    /// The checksum file exists but has no line for `asset`.
    case checksumNotListed(asset: String, checksumFile: String)
    /// The release or the asset does not exist at the source.
    case notFound(asset: String, source: String)
    /// The source could not be read this time (network, HTTP error, timeout).
    case unavailable(asset: String, source: String, reason: String)
    /// The asset is larger than the cache accepts for one artifact.
    case tooLarge(asset: String, source: String, bytesMax: Int)
    /// The cache directory could not be written.
    case storage(path: String, reason: String)
    /// The releases API (`digests`, e.g. `https://api.github.com/…/releases/tags/<tag>`) reports
    /// another digest for `asset` than the checksum file from `source`: the download origin or
    /// the path to it serves something the publisher did not upload. Nothing was cached.
    case publishedDigestMismatch(asset: String, source: String, checksumFile: String, digests: String, published: String)
    /// The releases API does not list `asset` in the release, though the download has it.
    case notPublished(asset: String, source: String, digests: String)
    /// The mirror's signed index (`index`) is missing, or its signature (`signature`) is missing
    /// or not one by the configured key: nothing from the mirror is used.
    case mirrorIndexRefused(index: String, signature: String, keyFile: String, reason: String)
    /// The signed index does not list `path`, or lists it with another digest (`listed`, nil
    /// when absent) than the mirror serves (`actual`).
    case notInMirrorIndex(path: String, index: String, listed: String?, actual: String)

    /// Trying again later may succeed.
    public var isTransient: Bool {
        if case .unavailable = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case let .checksumMismatch(asset, source, expected, actual):
            "\(asset) from \(source) has sha256 \(actual), but the release's checksum file says \(expected); nothing was cached and no node was touched (the download or the mirror is corrupt: fetch it again or fix the mirror)"
        case let .checksumNotListed(asset, checksumFile):
            "\(checksumFile) lists no checksum for \(asset); the release may not publish this architecture"
        case let .notFound(asset, source):
            "\(asset) not found at \(source); check the version, the architecture and the mirror's layout (<mirror>/\(ArtifactSource.repository)/releases/download/<tag>/<asset>)"
        case let .unavailable(asset, source, reason):
            "cannot fetch \(asset) from \(source): \(reason)"
        case let .tooLarge(asset, source, bytesMax):
            "\(asset) from \(source) is larger than \(bytesMax) bytes, the limit for one artifact"
        case let .storage(path, reason):
            "cannot write the artifact cache at \(path): \(reason); check the state directory's space and permissions"
        case let .publishedDigestMismatch(asset, source, checksumFile, digests, published):
            "\(asset) from \(source): the release's checksum file says sha256 \(checksumFile), but \(digests) says sha256 \(published); "
                + "the downloads do not match what was published, so nothing was cached and no node was touched "
                + "(check the download origin and any proxy in between; do not roll out until both agree)"
        case let .notPublished(asset, source, digests):
            "\(asset) is served by \(source), but \(digests) does not list it in the release; nothing was cached and no node was touched"
        case let .mirrorIndexRefused(index, signature, keyFile, reason):
            "the mirror is refused: \(reason) (index \(index), signature \(signature), key \(keyFile)); nothing from it was cached and no node was touched. "
                + "Sign the mirror's index with the private key whose public half is releases.indexKey (docs/fleet.md, \"Signed mirror index\")"
        case let .notInMirrorIndex(path, index, listed, actual):
            if let listed {
                "\(path) in the mirror has sha256 \(actual), but the signed index \(index) says \(listed); nothing was cached and no node was touched "
                    + "(the mirror's file was changed after the index was signed: copy it again, or make and sign a new index)"
            } else {
                "\(path) (sha256 \(actual)) is not in the signed index \(index); nothing was cached and no node was touched "
                    + "(add it to the index and sign it again: docs/fleet.md, \"Signed mirror index\")"
            }
        }
    }
}

/// Reads a `sha256sum` file: `<64 hex>  <name>` per line (`*name` in binary mode).
public enum ChecksumFile {
    /// The digest listed for `asset`, or nil. Malformed lines are skipped.
    public static func digest(of asset: String, in text: String) -> String? {
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard fields.count == 2 else { continue }
            var name = fields[1].drop { $0 == " " }
            if name.hasPrefix("*") { name = name.dropFirst() }
            let digest = fields[0].lowercased()
            if name == asset, digest.utf8.count == 64, digest.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) {
                return digest
            }
        }
        return nil
    }
}

/// An air-gapped mirror's list of its files, signed by the operator: `<mirror>/SHA256SUMS` in
/// `sha256sum`'s format over paths relative to the mirror
/// (`<hex>  k3s-io/k3s/releases/download/<tag>/<asset>`), and `<mirror>/SHA256SUMS.sig`, a
/// detached signature of that file's bytes by the key whose public half `releases.indexKey`
/// names (Ed25519, `openssl pkeyutl -sign -rawin`; or ECDSA P-256, `openssl dgst -sha256 -sign`).
/// A mirror's files cannot then be changed or added without that key, wherever the mirror lives.
public struct MirrorIndex: Sendable {
    public static let fileName = "SHA256SUMS"
    public static let signatureName = "SHA256SUMS.sig"
    /// An index lists a few files per release: 16 MiB is far beyond any real one.
    public static let bytesMax = 16 << 20
    /// An Ed25519 signature is 64 bytes, a DER ECDSA P-256 one at most 72.
    public static let signatureBytesMax = 1024

    /// The operator's public key and the file it came from (`releases.indexKey`).
    public struct TrustedKey: Sendable {
        public let key: PublicKey
        public let file: String
        public init(file: String) throws {
            key = try PublicKey(pemFile: file)
            self.file = file
        }
    }

    /// The index's text, its signature checked.
    public let text: String
    /// Where it was read, for messages.
    public let source: String

    /// The index whose `signature` by `key` is valid; else `mirrorIndexRefused` naming `reason`.
    public static func verified(_ index: [UInt8], signature: [UInt8], key: PublicKey, keyFile: String,
                                source: String, signatureSource: String) throws(ArtifactError) -> MirrorIndex {
        guard key.verifies(signature: signature, of: index) else {
            throw .mirrorIndexRefused(index: source, signature: signatureSource, keyFile: keyFile,
                                      reason: "the index's signature is not one by the configured \(key.keyType.rawValue) key")
        }
        return MirrorIndex(text: String(decoding: index, as: UTF8.self), source: source)
    }

    /// Throws unless the index lists `path` with `digest`.
    public func require(_ path: String, digest: String) throws(ArtifactError) {
        let listed = ChecksumFile.digest(of: path, in: text)
        guard listed == digest else { throw .notInMirrorIndex(path: path, index: source, listed: listed, actual: digest) }
    }
}
