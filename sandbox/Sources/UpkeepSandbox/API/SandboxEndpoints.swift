import UpkeepHTTPServer
import UpkeepKube

/// The sandbox's own endpoints under `/sandbox/v1/`, beside the Kubernetes API: a summary of the
/// model for `upkeep sandbox status`, and the fault knobs the model owns.
extension ClusterModel {
    mutating func sandboxRequest(_ request: APIRequest, rest: [String]) -> APIResponse {
        guard rest.first == "v1" else { return notFoundPath() }
        switch (request.method, Array(rest.dropFirst())) {
        case ("GET", ["state"]):
            return .json(summary())
        case ("GET", ["events"]):
            return .json(.array(events.map {
                ["time": .string(KubeTime.formatMicro($0.time)), "kind": .string($0.kind), "object": .string($0.object),
                 "message": .string($0.message)]
            }))
        case ("POST", ["faults", "flux"]):
            // {"object": "kustomization/flux-system/apps", "ready": false, "reason": "...", "message": "..."}
            guard let body = try? JSON.parse(bytes: request.body), let object = body["object"]?.string,
                  object.split(separator: "/").count == 3
            else {
                return .error(.badRequest("expected {\"object\": \"<kind>/<namespace>/<name>\", \"ready\": true|false}"))
            }
            if body["ready"]?.bool ?? true {
                fluxFaults[object] = nil
            } else {
                fluxFaults[object] = FluxFault(reason: body["reason"]?.string ?? "ReconciliationFailed",
                                               message: body["message"]?.string ?? "injected by upkeep sandbox fault")
            }
            record("Fault", object, body["ready"]?.bool ?? true ? "flux ready" : "flux not ready")
            reconcile()
            return .json(["faults": .object(fluxFaults.mapValues { ["reason": .string($0.reason), "message": .string($0.message)] })])
        case ("POST", ["timings"]):
            guard let body = try? JSON.parse(bytes: request.body) else { return .error(.badRequest("expected a JSON object of timings")) }
            if let value = body["rebuildSeconds"]?.double { timings.rebuildSeconds = value }
            if let value = body["nodeGraceSeconds"]?.double { timings.nodeGraceSeconds = value }
            if let value = body["podStartSeconds"]?.double { timings.podStartSeconds = value }
            if let value = body["podTerminationSeconds"]?.double { timings.podTerminationSeconds = value }
            if let value = body["snapshotSeconds"]?.double { timings.snapshotSeconds = value }
            reconcile()
            return .json(["rebuildSeconds": .double(timings.rebuildSeconds), "nodeGraceSeconds": .double(timings.nodeGraceSeconds),
                          "podStartSeconds": .double(timings.podStartSeconds),
                          "podTerminationSeconds": .double(timings.podTerminationSeconds),
                          "snapshotSeconds": .double(timings.snapshotSeconds)])
        default:
            return notFoundPath()
        }
    }

    /// Nodes, volumes and Flux objects in a few fields each; `ready` when every node is Ready
    /// and every attached volume healthy.
    public func summary() -> JSON {
        let nodes = store.list(.nodes).map(Node.init)
        let volumes = store.list(.longhornVolumes).map(LonghornVolume.init)
        var flux: [JSON] = []
        for type in Self.fluxTypes {
            for object in store.list(type) {
                let view = FluxKustomization(json: object)
                flux.append(["object": .string(Self.fluxKey(type, view.namespace ?? "", view.name)), "ready": .bool(view.isReady),
                             "suspended": .bool(view.suspended)])
            }
        }
        let ready = nodes.allSatisfy(\.isReady) && volumes.allSatisfy { $0.state != "attached" || $0.robustness == "healthy" }
        return [
            "ready": .bool(ready),
            "time": .string(KubeTime.formatMicro(now)),
            "nodes": .array(nodes.map {
                ["name": .string($0.name), "ready": .bool($0.isReady), "unschedulable": .bool($0.unschedulable),
                 "version": .string($0.kubeletVersion), "address": .string($0.internalIP ?? "")]
            }),
            "volumes": .array(volumes.map {
                ["name": .string($0.name), "state": .string($0.state), "robustness": .string($0.robustness), "node": .string($0.currentNodeID)]
            }),
            "flux": .array(flux),
            "writeStalls": .object(apiWriteStallSeconds.mapValues { .double($0) }),
            "clusterDNS": ["broken": .array(clusterDNSBroken.sorted().map { .string($0) }),
                           "queries": .object(clusterDNSCounts.mapValues { .int(Int64($0)) })],
        ]
    }
}
