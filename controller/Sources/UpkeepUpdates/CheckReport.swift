import UpkeepCore
import UpkeepHTTP

/// The result of one `upkeep check`: what is installed, what is available, the path there and
/// what would break. Its JSON form is documented in docs/check.md (`schemaVersion` 1); fields
/// are only ever added.
public struct CheckReport: Sendable, Equatable, Codable {
    public static let currentSchemaVersion = 1

    public var schemaVersion: Int
    /// ISO 8601 UTC.
    public var checkedAt: String
    public var releaseSource: String
    public var updatesAvailable: Bool
    public var components: [ComponentReport]
    /// Warnings that involve two components (a k3s target against Flux's or Longhorn's range).
    public var warnings: [CheckWarning]
    /// GitHub's rate-limit state after the check, when the source reports one.
    public var rateLimit: RateLimitStatus?

    public init(checkedAt: String, releaseSource: String, components: [ComponentReport], warnings: [CheckWarning],
                rateLimit: RateLimitStatus? = nil)
    {
        schemaVersion = Self.currentSchemaVersion
        self.checkedAt = checkedAt
        self.releaseSource = releaseSource
        self.components = components
        self.warnings = warnings
        self.rateLimit = rateLimit
        updatesAvailable = components.contains { $0.updateAvailable }
    }

    public func component(_ component: Component) -> ComponentReport? {
        components.first { $0.component == component }
    }

    /// Every warning, component ones first.
    public var allWarnings: [CheckWarning] { components.flatMap(\.warnings) + warnings }
}

/// One component's part of the report.
public struct ComponentReport: Sendable, Equatable, Codable {
    public var component: Component
    /// For k3s: the oldest node's version (`exact` false when nodes differ).
    public var installed: InstalledComponent
    /// k3s: every node.
    public var nodes: [NodeVersion]?
    /// k3s: the channel server's channels.
    public var channels: [K3sChannel]?
    /// k3s: the channel that chose the target.
    public var channel: String?
    /// The newest release considered (drafts and pre-releases only when asked for).
    public var latest: K3sVersion?
    public var target: K3sVersion?
    public var updateAvailable: Bool
    /// The hops from the installed version to the target, in order; the last is the target.
    public var path: [Hop]
    /// k3s: per architecture in the cluster, whether each hop's release publishes its files.
    public var architectures: [ArchitectureSupport]?
    public var releasesConsidered: Int
    public var warnings: [CheckWarning]

    public init(component: Component, installed: InstalledComponent, nodes: [NodeVersion]? = nil, channels: [K3sChannel]? = nil,
                channel: String? = nil, latest: K3sVersion? = nil, target: K3sVersion? = nil, updateAvailable: Bool = false,
                path: [Hop] = [], architectures: [ArchitectureSupport]? = nil, releasesConsidered: Int = 0, warnings: [CheckWarning] = [])
    {
        self.component = component
        self.installed = installed
        self.nodes = nodes
        self.channels = channels
        self.channel = channel
        self.latest = latest
        self.target = target
        self.updateAvailable = updateAvailable
        self.path = path
        self.architectures = architectures
        self.releasesConsidered = releasesConsidered
        self.warnings = warnings
    }
}

/// One step of an upgrade path.
public struct Hop: Sendable, Equatable, Codable {
    public var version: K3sVersion
    /// k3s: the nodes that take this step (those still older than it).
    public var nodes: [String]?
    /// Flux and Longhorn: the oldest Kubernetes this release supports, when known.
    public var kubernetesMin: MinorLine?

    public init(version: K3sVersion, nodes: [String]? = nil, kubernetesMin: MinorLine? = nil) {
        self.version = version
        self.nodes = nodes
        self.kubernetesMin = kubernetesMin
    }
}

/// k3s files for one architecture across the path's releases.
public struct ArchitectureSupport: Sendable, Equatable, Codable {
    public var arch: String
    public var nodes: [String]
    public var releases: [AssetSupport]

    public init(arch: String, nodes: [String], releases: [AssetSupport]) {
        self.arch = arch
        self.nodes = nodes
        self.releases = releases
    }

    public var isComplete: Bool { releases.allSatisfy { $0.binaryPublished == true && $0.checksumPublished == true } }
}

/// Whether one release publishes one architecture's binary and checksum file. Nil: the release
/// was not in the list read (so it is unknown).
public struct AssetSupport: Sendable, Equatable, Codable {
    public var version: K3sVersion
    public var binary: String
    public var binaryPublished: Bool?
    public var checksum: String
    public var checksumPublished: Bool?

    public init(version: K3sVersion, binary: String, binaryPublished: Bool?, checksum: String, checksumPublished: Bool?) {
        self.version = version
        self.binary = binary
        self.binaryPublished = binaryPublished
        self.checksum = checksum
        self.checksumPublished = checksumPublished
    }
}

/// Something an operator should know before upgrading; `code` is stable (docs/check.md lists them).
public struct CheckWarning: Sendable, Equatable, Codable, CustomStringConvertible {
    public var code: String
    public var component: Component?
    public var message: String

    public init(_ code: String, _ component: Component?, _ message: String) {
        self.code = code
        self.component = component
        self.message = message
    }

    public var description: String { "[\(code)] \(component.map { "\($0.rawValue): " } ?? "")\(message)" }
}
