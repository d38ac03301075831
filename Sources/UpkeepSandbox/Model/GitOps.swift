import UpkeepKube

/// What Flux does with a new commit of the repository it watches, as far as Upkeep's GitOps
/// updates reach: the source and the Kustomizations move to the commit's revision; the Longhorn
/// HelmRelease installs the chart version the commit names (unless a fault makes the upgrade
/// fail, as a Helm upgrade can); a new Flux version relabels Flux's CRDs as `flux install` would.
/// The runner reads the commits from a real Git repository; this part only models the cluster.
extension ClusterModel {
    public static let longhornRelease = (namespace: "longhorn-system", name: "longhorn")

    /// Flux fetched and applied commit `sha`, whose manifests pin these versions (nil: not found).
    public mutating func applyGitCommit(sha: String, longhornChartVersion: String?, fluxVersion: String?) {
        gitRevision = "main@sha1:\(sha)"
        if let chart = longhornChartVersion {
            store.modify(.fluxHelmReleases, Self.longhornRelease.namespace, Self.longhornRelease.name) { release in
                release[path: "spec", "chart", "spec", "version"] = .string(chart)
            }
            let key = Self.fluxKey(.fluxHelmReleases, Self.longhornRelease.namespace, Self.longhornRelease.name)
            if fluxFaults[key] == nil { setLonghornVersion("v" + chart) }
        }
        if let fluxVersion { setFluxVersion(fluxVersion) }
        reconcile()
    }

    /// The Longhorn version the cluster runs now (its `current-longhorn-version` setting).
    public var longhornVersion: String? { longhornSetting("current-longhorn-version") }

    private mutating func setLonghornVersion(_ version: String) {
        guard longhornVersion != version else { return }
        store.modify(.longhornSettings, Self.longhornNamespace, "current-longhorn-version") { $0["value"] = .string(version) }
        for type in [ResourceType.deployments, .daemonSets] {
            for object in store.list(type, namespace: Self.longhornNamespace) {
                guard let name = object[path: "metadata", "name"]?.string else { continue }
                store.modify(type, Self.longhornNamespace, name) { object in
                    guard var containers = object[path: "spec", "template", "spec", "containers"]?.array else { return }
                    for index in containers.indices {
                        if let image = containers[index]["image"]?.string, image.hasPrefix("longhornio/"), let colon = image.lastIndex(of: ":") {
                            containers[index]["image"] = .string(String(image[..<colon]) + ":" + version)
                        }
                    }
                    object[path: "spec", "template", "spec", "containers"] = .array(containers)
                }
            }
        }
        relabelCRDs(group: "longhorn.io", version: version)
        record("LonghornUpgraded", "longhorn", "Longhorn \(version) installed by the HelmRelease")
    }

    private mutating func setFluxVersion(_ version: String) {
        relabelCRDs(group: "toolkit.fluxcd.io", version: version)
    }

    private mutating func relabelCRDs(group suffix: String, version: String) {
        for crd in store.list(.customResourceDefinitions) {
            guard let name = crd[path: "metadata", "name"]?.string, name.hasSuffix(suffix),
                  crd[path: "metadata", "labels", "app.kubernetes.io/version"]?.string != version else { continue }
            store.modify(.customResourceDefinitions, nil, name) { $0[path: "metadata", "labels", "app.kubernetes.io/version"] = .string(version) }
        }
    }
}
