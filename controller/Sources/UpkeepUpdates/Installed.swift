import UpkeepCore
import UpkeepFlux
import UpkeepKube

/// One node's k3s as the cluster reports it (`status.nodeInfo.kubeletVersion`).
public struct NodeVersion: Sendable, Equatable, Codable {
    public var name: String
    public var role: NodeRole
    /// `kubernetes.io/arch` as the node reports it (kept as text: an unknown arch is shown, not dropped).
    public var arch: String
    /// Nil when `kubeletVersion` is not a k3s version (then `kubeletVersion` says what it was).
    public var version: K3sVersion?
    public var kubeletVersion: String
    public var ready: Bool

    public init(name: String, role: NodeRole, arch: String, version: K3sVersion?, kubeletVersion: String, ready: Bool) {
        self.name = name
        self.role = role
        self.arch = arch
        self.version = version
        self.kubeletVersion = kubeletVersion
        self.ready = ready
    }
}

/// k3s across the cluster: every node, servers first; several versions at once are normal
/// during a rollout and shown as such.
public struct InstalledK3s: Sendable, Equatable, Codable {
    public var nodes: [NodeVersion]

    public init(nodes: [NodeVersion]) {
        self.nodes = nodes.sorted { ($0.role, $0.name) < ($1.role, $1.name) }
    }

    /// Distinct versions, oldest first.
    public var versions: [K3sVersion] { Array(Set(nodes.compactMap(\.version))).sorted() }
    public var isMixed: Bool { versions.count > 1 }
    public var oldest: K3sVersion? { versions.first }
    public var newest: K3sVersion? { versions.last }
}

/// How Flux or Longhorn is installed.
public struct InstalledComponent: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        case installed
        case notInstalled = "not-installed"
        /// Present, but its version could not be read.
        case unknown
    }

    public var state: State
    public var version: K3sVersion?
    /// False when the version is inferred (Flux from its controllers' image tags).
    public var exact: Bool
    /// Where the version was read, in words (`CRD gitrepositories.source.toolkit.fluxcd.io label app.kubernetes.io/version`).
    public var source: String
    /// Flux only: it manages itself from Git (`flux bootstrap`).
    public var bootstrapped: Bool?
    public var detail: String?

    public init(state: State, version: K3sVersion? = nil, exact: Bool = true, source: String, bootstrapped: Bool? = nil, detail: String? = nil) {
        self.state = state
        self.version = version
        self.exact = exact
        self.source = source
        self.bootstrapped = bootstrapped
        self.detail = detail
    }
}

/// What runs in the cluster, for the components asked about.
public struct InstalledVersions: Sendable, Equatable, Codable {
    public var k3s: InstalledK3s
    public var flux: InstalledComponent?
    public var longhorn: InstalledComponent?

    public init(k3s: InstalledK3s, flux: InstalledComponent? = nil, longhorn: InstalledComponent? = nil) {
        self.k3s = k3s
        self.flux = flux
        self.longhorn = longhorn
    }
}

/// Reads installed versions from Kubernetes objects. Pure: the objects come from `ClusterInventory`.
public enum InstalledReader {
    public static let fluxNamespace = "flux-system"
    public static let longhornNamespace = "longhorn-system"
    public static let longhornVersionSetting = "current-longhorn-version"
    public static let versionLabel = "app.kubernetes.io/version"
    static let bootstrapLabel = "kustomize.toolkit.fluxcd.io/name"

    public static func k3s(nodes: [Node]) -> InstalledK3s {
        InstalledK3s(nodes: nodes.map { node in
            NodeVersion(name: node.name, role: NodeRoleLabels(labels: node.labels).role, arch: node.architecture,
                        version: try? Component.k3s.version(fromTag: node.kubeletVersion), kubeletVersion: node.kubeletVersion,
                        ready: node.isReady)
        })
    }

    /// The CRD's `app.kubernetes.io/version` label, as `flux version` reads it; failing that,
    /// the controllers' image tags: source-controller `v1.N.x` ships with Flux `v2.N`
    /// (fluxcd/flux2 `manifests/bases/source-controller/kustomization.yaml` at v2.0.0 to v2.9.4),
    /// so the minor is known and the patch is not (`exact: false`).
    public static func flux(crd: CustomResourceDefinition?, deployments: [Deployment]) -> InstalledComponent {
        let fluxDeployments = deployments.filter { $0.labels["app.kubernetes.io/part-of"] == "flux" || isFluxController($0) }
        let bootstrapped = crd.map { $0.labels[bootstrapLabel] != nil }
            ?? fluxDeployments.contains { $0.labels[bootstrapLabel] != nil }
        if let crd {
            let source = "CRD \(FluxManifest.versionCRD) label \(versionLabel)"
            guard let label = crd.labels[versionLabel] else {
                return fromControllers(fluxDeployments, bootstrapped: bootstrapped, why: "the CRD has no \(versionLabel) label")
            }
            guard let version = try? Component.flux.version(fromTag: label) else {
                return fromControllers(fluxDeployments, bootstrapped: bootstrapped, why: "the CRD's \(versionLabel) label is \"\(label.prefix(60))\"")
            }
            return InstalledComponent(state: .installed, version: version, source: source, bootstrapped: bootstrapped)
        }
        guard !fluxDeployments.isEmpty else {
            return InstalledComponent(state: .notInstalled, source: "no CRD \(FluxManifest.versionCRD) and no Flux controllers in \(fluxNamespace)")
        }
        return fromControllers(fluxDeployments, bootstrapped: bootstrapped, why: "no CRD \(FluxManifest.versionCRD)")
    }

    private static func isFluxController(_ deployment: Deployment) -> Bool {
        images(deployment.json).contains { $0.hasPrefix("ghcr.io/fluxcd/") || $0.hasPrefix("fluxcd/") }
    }

    private static func fromControllers(_ deployments: [Deployment], bootstrapped: Bool, why: String) -> InstalledComponent {
        let tags = deployments.flatMap { images($0.json) }.compactMap { image -> (String, String)? in
            guard let (repository, tag) = split(image: image) else { return nil }
            return (String(repository.split(separator: "/").last ?? ""), tag)
        }.sorted { $0.0 < $1.0 }
        let listed = tags.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
        let source = "Flux controller image tags (\(why))"
        if let sourceController = tags.first(where: { $0.0 == "source-controller" }),
           let controllerVersion = try? K3sVersion(sourceController.1), controllerVersion.major == 1
        {
            let version = K3sVersion(major: 2, minor: controllerVersion.minor, patch: 0, build: nil)
            return InstalledComponent(state: .installed, version: version, exact: false, source: source, bootstrapped: bootstrapped,
                                      detail: "Flux v2.\(controllerVersion.minor).x inferred from source-controller \(sourceController.1); controllers: \(listed)")
        }
        return InstalledComponent(state: .unknown, source: source, bootstrapped: bootstrapped,
                                  detail: listed.isEmpty ? "no controller images found" : "controllers: \(listed)")
    }

    /// The `current-longhorn-version` setting; failing that, the longhorn-manager image tag.
    public static func longhorn(setting: LonghornSetting?, workloads: [JSON]) -> InstalledComponent {
        if let setting, !setting.value.isEmpty {
            if let version = try? Component.longhorn.version(fromTag: setting.value) {
                return InstalledComponent(state: .installed, version: version, source: "setting \(longhornVersionSetting)")
            }
        }
        let why = setting == nil ? "no setting \(longhornVersionSetting)" : "setting \(longhornVersionSetting) is \"\(setting?.value.prefix(60) ?? "")\""
        let managerTags = workloads.flatMap(images).compactMap(split(image:)).filter { $0.repository.hasSuffix("/longhorn-manager") }
        if let tag = managerTags.first?.tag, let version = try? Component.longhorn.version(fromTag: tag) {
            return InstalledComponent(state: .installed, version: version, source: "longhorn-manager image tag (\(why))")
        }
        if setting == nil && workloads.isEmpty {
            return InstalledComponent(state: .notInstalled, source: "no setting \(longhornVersionSetting) and no longhorn-manager in \(longhornNamespace)")
        }
        return InstalledComponent(state: .unknown, source: "longhorn-manager image tag (\(why))",
                                  detail: managerTags.isEmpty ? "no longhorn-manager image found" : "longhorn-manager image tag \(managerTags[0].tag)")
    }

    /// Container images of a workload's pod template.
    public static func images(_ workload: JSON) -> [String] {
        let spec = workload[path: "spec", "template", "spec"]
        return ((spec?["initContainers"]?.array ?? []) + (spec?["containers"]?.array ?? [])).compactMap { $0["image"]?.string }
    }

    /// `registry/repo:tag` (a digest suffix dropped); nil without a tag.
    static func split(image: String) -> (repository: String, tag: String)? {
        let withoutDigest = image.split(separator: "@").first.map(String.init) ?? image
        guard let colon = withoutDigest.lastIndex(of: ":"), !withoutDigest[colon...].contains("/") else { return nil }
        return (String(withoutDigest[..<colon]), String(withoutDigest[withoutDigest.index(after: colon)...]))
    }
}
