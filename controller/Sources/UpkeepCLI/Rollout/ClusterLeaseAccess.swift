import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepKube
import UpkeepPOSIX
import UpkeepStore

/// Making the cluster Lease from `upkeep.yaml`: its own API client, this controller's id, and
/// its events counted in the state database (for `upkeep_cluster_lease_events_total`).
enum ClusterLeaseAccess {
    /// A client for the Lease alone, each request bounded by half the renew deadline (at most 10 s),
    /// so a renewal that hangs leaves time for another try before the deadline.
    static func client(_ config: ControllerConfig, endpoint: KubeEndpoint) throws -> KubeClient {
        try KubeClient(endpoint: endpoint, requestTimeoutSeconds: Double(max(1, min(10, config.lease.renewDeadlineSeconds / 2))), connectionsMax: 2)
    }

    static func lease(_ config: ControllerConfig, client: KubeClient, store: StateStore, stateDirectory: String) throws -> ClusterLease {
        lease(config, client: client, store: store, controllerID: try ControllerIdentity.load(stateDirectory: stateDirectory))
    }

    static func lease(_ config: ControllerConfig, client: KubeClient, store: StateStore, controllerID: String) -> ClusterLease {
        ClusterLease(client: client, controllerID: controllerID, terms: config.lease, now: { Instant.wallClockNow() },
                     record: { event in try? store.countLeaseEvent(event.rawValue, now: Instant.wallClockNow()) })
    }

    /// For commands that only read the Lease or give a leftover back (`status`, `abandon`): a client
    /// of its own from the kubeconfig, nil (with the reason) when there is none. It makes no
    /// controller id (status writes nothing): without one this controller never took the Lease,
    /// so no Lease can be its leftover.
    static func standalone(_ config: ControllerConfig, store: StateStore) -> (lease: ClusterLease?, client: KubeClient?, problem: String?) {
        do {
            let controllerID = try ControllerIdentity.existing(stateDirectory: config.resolvedStateDirectory()) ?? "none-made-yet"
            let endpoint = try Kubeconfig.load(path: config.kubeconfig).endpoint(context: config.context)
            let client = try KubeClient(endpoint: endpoint, requestTimeoutSeconds: 5, connectionsMax: 1)
            return (lease(config, client: client, store: store, controllerID: controllerID), client, nil)
        } catch let failure as CommandFailure {
            return (nil, nil, failure.message)
        } catch {
            return (nil, nil, "kubeconfig: \(error)")
        }
    }
}
