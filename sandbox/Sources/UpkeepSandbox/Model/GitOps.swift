import UpkeepFlux
import UpkeepKube

/// What Flux does with a new commit of the repository it watches, as far as Upkeep's GitOps
/// updates reach: the source and the Kustomizations move to the commit's revision; the Longhorn
/// HelmRelease installs the chart version the commit names (unless a fault makes the upgrade
/// fail, as a Helm upgrade can); new Flux components relabel Flux's CRDs and move its
/// controllers to the new images, as kustomize-controller applying them would (unless a fault
/// makes that apply fail: the flux-system Kustomization turns not Ready and Flux stays).
/// The runner reads the commits from a real Git repository; this part only models the cluster.
///
/// Each step waits while its object is suspended (`spec.suspend: true`, what `flux suspend`
/// sets: https://fluxcd.io/flux/cmd/flux_suspend_kustomization/), and happens when it is resumed,
/// as Flux's controllers skip a suspended object's reconciliation
/// (https://fluxcd.io/flux/components/kustomize/kustomizations/#suspend,
/// https://fluxcd.io/flux/components/helm/helmreleases/#suspend,
/// https://fluxcd.io/flux/components/source/gitrepositories/#suspend): the GitRepository
/// `flux-system` fetches, the Kustomization `flux-system` applies what was fetched (the
/// HelmRelease's chart version, Flux's components), the HelmRelease `longhorn` installs its chart.
extension ClusterModel {
    public static let longhornRelease = (namespace: "longhorn-system", name: "longhorn")

    /// A new commit `sha` on the branch Flux watches, whose manifests pin these versions (nil:
    /// not found). Flux fetches and applies it when its objects are not suspended (`reconcileGit`).
    public mutating func applyGitCommit(sha: String, longhornChartVersion: String?, flux: (version: String, images: [String: String])?) {
        gitPending = GitCommit(sha: sha, longhornChart: longhornChartVersion, flux: flux.map { FluxRelease(version: $0.version, images: $0.images) })
        reconcile()
    }

    /// Fetch, apply, install: each as far as its object is not suspended.
    mutating func reconcileGit() {
        if let pending = gitPending, !isSuspended(.fluxGitRepositories, FluxManifests.namespace, Self.fluxSystemKustomization) {
            gitRevision = "main@sha1:\(pending.sha)"
            gitFetched = pending
            gitPending = nil
        }
        let kustomization = Self.fluxKey(.fluxKustomizations, FluxManifests.namespace, Self.fluxSystemKustomization)
        if let fetched = gitFetched, fetched.sha != gitAppliedSHA,
           !isSuspended(.fluxKustomizations, FluxManifests.namespace, Self.fluxSystemKustomization) {
            gitAppliedSHA = fetched.sha
            if let chart = fetched.longhornChart {
                store.modify(.fluxHelmReleases, Self.longhornRelease.namespace, Self.longhornRelease.name) { release in
                    release[path: "spec", "chart", "spec", "version"] = .string(chart)
                }
                helmPendingChart = chart
            }
            fluxFaults[kustomization] = nil
            if let flux = fetched.flux, flux.version != fluxVersion {
                if fluxUpgradeFails {
                    fluxFaults[kustomization] = FluxFault(reason: "ReconciliationFailed", message: "Deployment/flux-system/source-controller "
                                                          + "dry-run failed: admission webhook denied the request (sandbox fault)")
                } else {
                    setFluxVersion(flux.version, images: flux.images)
                }
            }
        }
        if let chart = helmPendingChart, !isSuspended(.fluxHelmReleases, Self.longhornRelease.namespace, Self.longhornRelease.name) {
            helmPendingChart = nil
            let key = Self.fluxKey(.fluxHelmReleases, Self.longhornRelease.namespace, Self.longhornRelease.name)
            // A fault set from outside (`upgrade-fails`) fails Helm before it changes anything.
            if fluxFaults[key] == nil || fluxFaults[key] == longhornHelmFailure { installLonghornChart(chart, key: key) }
        }
    }

    /// Helm installs chart `chart` of Longhorn. A chart older than the running manager fails
    /// Longhorn's pre-upgrade check and changes nothing: "downgrades are not supported and are
    /// blocked" (https://longhorn.io/docs/1.12.2/deploy/upgrade/). With the `fails-after-manager`
    /// fault the new manager runs and the release still fails, as a Helm upgrade whose wait
    /// times out after the manager DaemonSet rolled.
    private mutating func installLonghornChart(_ chart: String, key: String) {
        let target = "v" + chart
        if let running = longhornVersion, Self.isOlderVersion(target, than: running) {
            longhornHelmFailure = FluxFault(reason: "UpgradeFailed", message: "Helm upgrade failed: pre-upgrade hooks failed: Longhorn "
                                            + "\(running) cannot be downgraded to \(target): downgrade is not supported (sandbox)")
            record("LonghornDowngradeBlocked", "longhorn", "chart \(chart) refused: the manager runs \(running)")
        } else {
            setLonghornVersion(target)
            longhornHelmFailure = longhornFaults.failsAfterManager
                ? FluxFault(reason: "UpgradeFailed", message: "Helm upgrade failed: timed out waiting for the condition (the manager runs \(target); sandbox fault)")
                : nil
        }
        fluxFaults[key] = longhornHelmFailure
    }

    /// Whether `version` (vX.Y.Z) is older than `other`; false when either does not parse.
    static func isOlderVersion(_ version: String, than other: String) -> Bool {
        func parts(_ text: String) -> [Int]? {
            let numbers = (text.hasPrefix("v") ? String(text.dropFirst()) : text).split(separator: ".").compactMap { Int($0) }
            return numbers.count == 3 ? numbers : nil
        }
        guard let left = parts(version), let right = parts(other) else { return false }
        return left.lexicographicallyPrecedes(right)
    }

    func isSuspended(_ type: ResourceType, _ namespace: String, _ name: String) -> Bool {
        store.get(type, namespace, name)?[path: "spec", "suspend"]?.bool ?? false
    }

    /// The Kustomization `flux bootstrap` creates, which applies Flux's own components.
    public static let fluxSystemKustomization = "flux-system"

    /// The Flux version the cluster runs now (the label `flux version` reads).
    public var fluxVersion: String? {
        store.get(.customResourceDefinitions, nil, FluxManifest.versionCRD)?[path: "metadata", "labels", "app.kubernetes.io/version"]?.string
    }

    /// The Longhorn version the cluster runs now (its `current-longhorn-version` setting).
    public var longhornVersion: String? { longhornSetting("current-longhorn-version") }

    private mutating func setLonghornVersion(_ version: String) {
        guard longhornVersion != version else { return }
        store.modify(.longhornSettings, Self.longhornNamespace, "current-longhorn-version") { $0["value"] = .string(version) }
        store.modify(.longhornSettings, Self.longhornNamespace, "default-engine-image") { $0["value"] = .string(Self.engineImage(version)) }
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

    private mutating func setFluxVersion(_ version: String, images: [String: String]) {
        relabelCRDs(group: "toolkit.fluxcd.io", version: version)
        for (name, image) in images {
            store.modify(.deployments, FluxManifests.namespace, name) { deployment in
                deployment[path: "metadata", "labels", "app.kubernetes.io/version"] = .string(version)
                guard var containers = deployment[path: "spec", "template", "spec", "containers"]?.array, !containers.isEmpty else { return }
                containers[0]["image"] = .string(image)
                deployment[path: "spec", "template", "spec", "containers"] = .array(containers)
            }
        }
        record("FluxUpgraded", "flux", "Flux \(version) applied by the flux-system Kustomization")
    }

    private mutating func relabelCRDs(group suffix: String, version: String) {
        for crd in store.list(.customResourceDefinitions) {
            guard let name = crd[path: "metadata", "name"]?.string, name.hasSuffix(suffix),
                  crd[path: "metadata", "labels", "app.kubernetes.io/version"]?.string != version else { continue }
            store.modify(.customResourceDefinitions, nil, name) { $0[path: "metadata", "labels", "app.kubernetes.io/version"] = .string(version) }
        }
    }
}
