import UpkeepKube

extension ClusterCapture {
    /// Reads the cluster through `client` with GET and LIST requests only (never a watch, never
    /// a write): what `upkeep rehearse` copies into its twin. A resource the cluster does not
    /// serve (Longhorn or Flux not installed: 404) is left out; any other failure throws.
    ///
    /// `now` stamps the capture (seconds since 1970); the caller reads the clock.
    public static func read(from client: KubeClient, now: Double) async throws -> ClusterCapture {
        let nodes = try await client.list(UpkeepKube.Node.self).map(Self.node).sorted { $0.name < $1.name }
        let deployments = try await client.list(Deployment.self)
        let statefulSets = try await client.list(StatefulSet.self)
        let daemonSets = try await client.list(DaemonSet.self)
        let replicaSets = try await client.list(.replicaSets)
        let pods = try await client.list(UpkeepKube.Pod.self)
        let budgets = try await client.list(PodDisruptionBudget.self)

        // A ReplicaSet's pods belong to its Deployment: the workload that brings them back.
        var replicaSetOwners: [String: Owner] = [:]
        for replicaSet in replicaSets {
            let view = Deployment(json: replicaSet)
            if let owner = view.controller, owner.kind == "Deployment" {
                replicaSetOwners["\(view.namespace ?? "")/\(view.name)"] = Owner(kind: "Deployment", name: owner.name)
            }
        }
        func owner(of pod: UpkeepKube.Pod) -> Owner? {
            guard let controller = pod.controller else { return nil }
            if controller.kind == "ReplicaSet" {
                return replicaSetOwners["\(pod.namespace ?? "")/\(controller.name)"] ?? Owner(kind: "ReplicaSet", name: controller.name)
            }
            return Owner(kind: controller.kind, name: controller.name)
        }

        var workloads: [Workload] = []
        for deployment in deployments {
            workloads.append(Self.workload(.deployment, deployment.json, replicas: Int(deployment.replicas)))
        }
        for statefulSet in statefulSets {
            workloads.append(Self.workload(.statefulSet, statefulSet.json, replicas: Int(statefulSet.replicas)))
        }
        for daemonSet in daemonSets { workloads.append(Self.workload(.daemonSet, daemonSet.json, replicas: nil)) }

        let capturedPods = pods.filter { !$0.isTerminating }.map { pod in
            Pod(namespace: pod.namespace ?? "", name: pod.name, node: pod.nodeName, labels: pod.labels, owner: owner(of: pod),
                ready: pod.isReady, phase: pod.phase, usesEmptyDir: pod.usesEmptyDir)
        }
        let capturedBudgets = budgets.map { budget in
            DisruptionBudget(namespace: budget.namespace ?? "", name: budget.name, selector: budget.selector.description,
                             minAvailable: budget.minAvailable.flatMap(Self.intOrString),
                             maxUnavailable: budget.maxUnavailable.flatMap(Self.intOrString),
                             disruptionsAllowed: Int(budget.disruptionsAllowed), currentHealthy: Int(budget.currentHealthy),
                             desiredHealthy: Int(budget.desiredHealthy), expectedPods: Int(budget.expectedPods))
        }
        return ClusterCapture(capturedAt: KubeTime.format(now), server: "\(client.endpoint.server.url)", nodes: nodes,
                              workloads: workloads.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) },
                              pods: capturedPods.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) },
                              disruptionBudgets: capturedBudgets.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) },
                              longhorn: try await readLonghorn(client), flux: try await readFlux(client))
    }

    static func node(_ node: UpkeepKube.Node) -> Node {
        let taints = node.taints.map {
            Taint(key: $0["key"]?.string ?? "", value: $0["value"]?.string ?? "", effect: $0["effect"]?.string ?? "")
        }
        return Node(name: node.name, role: node.isControlPlane ? .server : .agent, version: node.kubeletVersion,
                    architecture: node.architecture, labels: node.labels, taints: taints, unschedulable: node.unschedulable,
                    ready: node.isReady, internalIP: node.internalIP)
    }

    static func workload(_ kind: Workload.Kind, _ json: JSON, replicas: Int?) -> Workload {
        let view = Deployment(json: json)
        return Workload(kind: kind, namespace: view.namespace ?? "", name: view.name, replicas: replicas, selector: view.selector.description,
                        podLabels: json[path: "spec", "template", "metadata", "labels"]?.stringMap ?? [:])
    }

    /// An IntOrString field as written (`1`, `"50%"`).
    static func intOrString(_ value: JSON) -> String? {
        if let number = value.int { return String(number) }
        return value.string
    }

    /// Nil when Longhorn's CRDs are not served.
    static func readLonghorn(_ client: KubeClient) async throws -> Longhorn? {
        let settings: [LonghornSetting]
        do { settings = try await client.list(LonghornSetting.self) } catch let error as KubeAPIError where error.isNotFound { return nil }
        let values = Dictionary(settings.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        let volumes = try await client.list(LonghornVolume.self).map {
            Longhorn.Volume(name: $0.name, numberOfReplicas: Int($0.numberOfReplicas), size: $0.size, state: $0.state,
                            robustness: $0.robustness, node: $0.currentNodeID)
        }
        let replicas = try await client.list(LonghornReplica.self).map {
            Longhorn.Replica(name: $0.name, volume: $0.volumeName, node: $0.nodeID, state: $0.currentState, healthy: $0.isHealthy)
        }
        return Longhorn(version: values["current-longhorn-version"] ?? "", settings: values, volumes: volumes.sorted { $0.name < $1.name },
                        replicas: replicas.sorted { $0.name < $1.name })
    }

    /// Flux's sources, Kustomizations and HelmReleases; those whose CRD is not served are left out.
    static func readFlux(_ client: KubeClient) async throws -> [FluxObject] {
        var objects: [FluxObject] = []
        for type in [ResourceType.fluxGitRepositories, .fluxKustomizations, .fluxHelmReleases] {
            let items: [JSON]
            do { items = try await client.list(type) } catch let error as KubeAPIError where error.isNotFound { continue }
            for item in items {
                let view = FluxKustomization(json: item)
                objects.append(FluxObject(kind: type.kind, namespace: view.namespace ?? "", name: view.name, ready: view.isReady,
                                          suspended: view.suspended))
            }
        }
        return objects
    }
}
