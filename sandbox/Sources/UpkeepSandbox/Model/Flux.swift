import UpkeepKube

/// Flux's behaviour: every object reconciles to Ready at its current generation unless a fault
/// holds it not Ready; a suspended object keeps its last status; suspend and resume are recorded.
/// An object is reconciled by its controller (https://fluxcd.io/flux/components/): while that
/// controller's Deployment in `flux-system` is scaled to zero, nothing updates the object's
/// status, so a change to its spec stays unobserved (`status.observedGeneration` behind
/// `metadata.generation`, https://fluxcd.io/flux/components/kustomize/kustomizations/#conditions).
/// Only the scale is modelled: a controller whose pods are still starting reconciles.
extension ClusterModel {
    static let fluxTypes: [ResourceType] = [.fluxGitRepositories, .fluxKustomizations, .fluxHelmReleases]

    /// The controller that reconciles objects of `type`.
    static func fluxController(of type: ResourceType) -> String {
        switch type {
        case .fluxGitRepositories: "source-controller"
        case .fluxHelmReleases: "helm-controller"
        default: "kustomize-controller"
        }
    }

    /// False when the controller's Deployment exists and is scaled to zero; true when it is not
    /// modelled at all.
    func fluxControllerRuns(_ name: String) -> Bool {
        guard let deployment = store.get(.deployments, FluxManifests.namespace, name) else { return true }
        return (deployment[path: "spec", "replicas"]?.int ?? 1) > 0
    }

    static func fluxKey(_ type: ResourceType, _ namespace: String, _ name: String) -> String {
        "\(type.kind.lowercased())/\(namespace)/\(name)"
    }

    mutating func reconcileFlux() {
        for type in Self.fluxTypes {
            for object in store.list(type) {
                let namespace = object[path: "metadata", "namespace"]?.string ?? "default"
                let name = object[path: "metadata", "name"]?.string ?? ""
                let key = Self.fluxKey(type, namespace, name)
                let suspended = object[path: "spec", "suspend"]?.bool ?? false
                if let previous = fluxSuspended[key], previous != suspended {
                    record(suspended ? "FluxSuspended" : "FluxResumed", key, suspended ? "suspended" : "resumed")
                }
                fluxSuspended[key] = suspended
                if suspended || !fluxControllerRuns(Self.fluxController(of: type)) { continue }
                let revision = gitRevision ?? ("main@sha1:" + StableHash.hex("rev/\(key)", length: 16) + StableHash.hex("rev2/\(key)", length: 16)
                    + StableHash.hex("rev3/\(key)", length: 8))
                var updated = object
                let ready: JSON
                if let fault = fluxFaults[key] {
                    ready = Self.condition(object, "Ready", false, reason: fault.reason, message: fault.message, now: now)
                } else {
                    let (reason, message): (String, String) = switch type {
                    case .fluxGitRepositories: ("Succeeded", "stored artifact for revision '\(revision)'")
                    case .fluxHelmReleases: ("UpgradeSucceeded", "Helm upgrade succeeded for release \(namespace)/\(name)")
                    default: ("ReconciliationSucceeded", "Applied revision: \(revision)")
                    }
                    ready = Self.condition(object, "Ready", true, reason: reason, message: message, now: now)
                }
                updated[path: "status", "conditions"] = [ready]
                updated[path: "status", "observedGeneration"] = object[path: "metadata", "generation"] ?? 1
                if let requested = object[path: "metadata", "annotations", "reconcile.fluxcd.io/requestedAt"] {
                    updated[path: "status", "lastHandledReconcileAt"] = requested
                }
                switch type {
                case .fluxGitRepositories:
                    updated[path: "status", "artifact", "revision"] = .string(revision)
                case .fluxKustomizations:
                    // kustomize-controller: the revision it last tried, and the one applied when that succeeded.
                    if fluxFaults[key] == nil { updated[path: "status", "lastAppliedRevision"] = .string(revision) }
                    updated[path: "status", "lastAttemptedRevision"] = .string(revision)
                case .fluxHelmReleases:
                    // helm-controller: the chart version it last tried, and the one installed when that succeeded.
                    let chart = object[path: "spec", "chart", "spec", "version"] ?? ""
                    updated[path: "status", "lastAttemptedRevision"] = chart
                    if fluxFaults[key] == nil { updated[path: "status", "lastAppliedRevision"] = chart }
                default:
                    break
                }
                store.update(type, updated)
            }
        }
    }
}
