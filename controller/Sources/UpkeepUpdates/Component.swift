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

    /// k3s releases before v1.17.0+k3s1 used other schemes (`0.6.0`, `v0.10.2`, `v1.0.1`,
    /// `v1.17.0+k3s.1`; k3s-io/k3s issues 550 and 1248). They are real releases Upkeep never
    /// plans for, so a release list may contain them.
    static let k3sSchemeStart = K3sVersion(major: 1, minor: 17, patch: 0, build: "k3s1")

    /// Like `version(fromTag:)` for a release list: nil for a release of a legacy tag scheme,
    /// which is skipped (k3s before v1.17.0+k3s1; pre-1.0 tags such as Longhorn's `v0.3-rc1`
    /// that are not versions at all); an error for anything else that is not a version of
    /// this component.
    public func releaseVersion(fromTag tag: String) throws(TagError) -> K3sVersion? {
        if tag.hasPrefix("v0.") || tag.hasPrefix("0."), (try? K3sVersion(tag)) == nil { return nil }
        if self == .k3s, let legacy = try? K3sVersion(tag), legacy.k3sBuild == nil || !tag.hasPrefix("v"), legacy < Self.k3sSchemeStart {
            return nil
        }
        return try version(fromTag: tag)
    }

    public static func < (lhs: Component, rhs: Component) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Why a tag is not a version of a component.
public struct TagError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
}
