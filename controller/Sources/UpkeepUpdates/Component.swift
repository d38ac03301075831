import UpkeepCore

/// What `upkeep check` looks at: k3s itself, Flux and Longhorn.
public enum Component: String, Codable, Sendable, CaseIterable, Comparable {
    case k3s
    case flux
    case longhorn

    /// The GitHub repository that publishes its releases.
    public var repository: String {
        switch self {
        case .k3s: "k3s-io/k3s"
        case .flux: "fluxcd/flux2"
        case .longhorn: "longhorn/longhorn"
        }
    }

    /// What a release tag of this component looks like, for error messages.
    public var tagExample: String {
        switch self {
        case .k3s: "v1.33.4+k3s1 (or v1.34.0-rc1+k3s1)"
        case .flux: "v2.4.0"
        case .longhorn: "v1.7.2 (or v1.8.0-rc1)"
        }
    }

    /// Checks that a tag is a version of this component: k3s tags carry `+k3sN`; Flux and
    /// Longhorn tags carry no build metadata.
    public func version(fromTag tag: String) throws(TagError) -> K3sVersion {
        let version: K3sVersion
        do { version = try K3sVersion(tag) } catch { throw TagError(description: error.description) }
        guard tag.hasPrefix("v") else { throw TagError(description: "tag \"\(tag)\" does not start with \"v\"; expected like \(tagExample)") }
        switch self {
        case .k3s:
            guard version.k3sBuild != nil else {
                throw TagError(description: "tag \"\(tag)\" is not a k3s release tag (no +k3sN); expected like \(tagExample)")
            }
        case .flux, .longhorn:
            guard version.build == nil else {
                throw TagError(description: "tag \"\(tag)\" carries build metadata; expected like \(tagExample)")
            }
        }
        return version
    }

    public static func < (lhs: Component, rhs: Component) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Why a tag is not a version of a component.
public struct TagError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
}
