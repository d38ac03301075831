import UpkeepKube

/// The kinds of Flux object maintenance mode suspends (`maintenance.suspend` in upkeep.yaml):
/// each has `spec.suspend`, which `flux suspend` sets and Flux's controllers honour
/// (https://fluxcd.io/flux/cmd/flux_suspend_kustomization/, https://fluxcd.io/flux/cmd/flux_suspend_helmrelease/,
/// https://fluxcd.io/flux/cmd/flux_suspend_source_git/).
public enum FluxSuspendKind: String, CaseIterable, Sendable {
    case kustomizations
    case helmreleases
    case gitrepositories

    /// Every Kustomization and HelmRelease: what Flux applies. Their sources keep fetching.
    public static let defaults: [FluxSuspendKind] = [.kustomizations, .helmreleases]

    var resource: ResourceType {
        switch self {
        case .kustomizations: .fluxKustomizations
        case .helmreleases: .fluxHelmReleases
        case .gitrepositories: .fluxGitRepositories
        }
    }
}

/// One Flux object as maintenance mode records it: `Kustomization/flux-system/apps`.
public struct FluxObjectRef: Hashable, Sendable, CustomStringConvertible {
    public let kind: FluxSuspendKind
    public let namespace: String
    public let name: String

    public init(kind: FluxSuspendKind, namespace: String, name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    /// Reads `Kind/namespace/name` back; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, !parts[1].isEmpty, !parts[2].isEmpty,
              let kind = FluxSuspendKind.allCases.first(where: { $0.resource.kind == parts[0] }) else { return nil }
        self.init(kind: kind, namespace: parts[1], name: parts[2])
    }

    public var description: String { "\(kind.resource.kind)/\(namespace)/\(name)" }
}
