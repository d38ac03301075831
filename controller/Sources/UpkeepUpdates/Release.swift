import UpkeepCore

/// One GitHub release of a component, validated: its tag is a version of that component and
/// every asset has a plain file name and a download URL ending in it.
public struct Release: Sendable, Equatable, Codable {
    public var tag: String
    public var version: K3sVersion
    public var draft: Bool
    /// GitHub's `prerelease` flag, or a version with a pre-release part (`-rc1`).
    public var prerelease: Bool
    public var publishedAt: String?
    public var assets: [ReleaseAsset]

    public init(tag: String, version: K3sVersion, draft: Bool = false, prerelease: Bool = false, publishedAt: String? = nil,
                assets: [ReleaseAsset] = [])
    {
        self.tag = tag
        self.version = version
        self.draft = draft
        self.prerelease = prerelease
        self.publishedAt = publishedAt
        self.assets = assets
    }

    public func asset(named name: String) -> ReleaseAsset? { assets.first { $0.name == name } }

    /// Published and complete: the asset exists and GitHub finished uploading it.
    public func publishes(_ name: String) -> Bool { asset(named: name)?.isUploaded ?? false }
}

/// One file attached to a release.
public struct ReleaseAsset: Sendable, Equatable, Codable {
    public var name: String
    public var size: Int64
    /// `uploaded` once complete (`open` while an upload is in progress).
    public var state: String
    /// GitHub's `sha256:<hex>` digest, when it computed one (since June 2025; may be null).
    public var digest: String?
    public var downloadURL: String

    public init(name: String, size: Int64, state: String = "uploaded", digest: String? = nil, downloadURL: String) {
        self.name = name
        self.size = size
        self.state = state
        self.digest = digest
        self.downloadURL = downloadURL
    }

    public var isUploaded: Bool { state == "uploaded" }
}

/// Which releases a check considers.
public struct ReleaseFilter: Sendable, Equatable, Codable {
    public var includePreReleases: Bool
    public var includeDrafts: Bool

    public init(includePreReleases: Bool = false, includeDrafts: Bool = false) {
        self.includePreReleases = includePreReleases
        self.includeDrafts = includeDrafts
    }

    public func admits(_ release: Release) -> Bool {
        (includeDrafts || !release.draft) && (includePreReleases || !release.prerelease)
    }
}

/// A k3s channel from the channel server: `stable`, `latest`, `testing`, `v1.NN`.
public struct K3sChannel: Sendable, Equatable, Codable {
    public var name: String
    public var latest: K3sVersion

    public init(name: String, latest: K3sVersion) {
        self.name = name
        self.latest = latest
    }
}
