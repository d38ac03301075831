import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepPOSIX
import UpkeepProtocol
import UpkeepRollout
import UpkeepStore
import UpkeepUpdates

/// Reads what `upkeep validate` judges, and nothing else: nodes and Longhorn volumes as the
/// rollout reads them (`ClusterSession.read`), etcd through the server agents as the etcd gate
/// does (`ClusterGateReader`), the unfinished rollout from the state database, Flux's and
/// Longhorn's objects through the API. It never writes. Every read is bounded by the API client's
/// and the agents' timeouts; a read that fails becomes `unreadable` with its reason, never a pass.
struct ValidationReader {
    let session: ClusterSession
    let store: StateStore?
    /// Why the state database could not be opened, when it could not.
    var storeProblem: String? = nil

    // MARK: - cluster

    /// The nodes and their agents, as the rollout reads them: read once, for every check that
    /// needs them (the cluster's, storage's managers, the networking checks through the agents).
    func nodes() async -> Result<FleetReading, any Error> {
        do { return .success(try await session.read()) } catch { return .failure(error) }
    }

    func cluster(_ read: Result<FleetReading, any Error>) async -> ClusterValidationObservations {
        let rollout = unfinishedRollout()
        let reading: FleetReading
        switch read {
        case .success(let read): reading = read
        case .failure(let error):
            return ClusterValidationObservations(nodes: .unreadable(Self.text(error)), rollout: rollout,
                                                 etcd: .unknown("the nodes could not be read, so neither could the servers' agents be found"))
        }
        let nodes = reading.nodes.map(\.node).map { node in
            ClusterValidationObservations.Node(name: node.name, server: node.role == .server, ready: node.ready, version: node.version.description,
                                               cordoned: node.cordoned)
        }
        return ClusterValidationObservations(nodes: .read(nodes), rollout: rollout, etcd: await etcd(reading))
    }

    /// What the etcd gate reads: the servers with embedded etcd, asked in turn through their agents.
    private func etcd(_ reading: FleetReading) async -> EtcdReading {
        let members = reading.nodes.map(\.node).filter { $0.role == .server && $0.etcd }.map(\.name)
        guard !members.isEmpty else { return .noEmbeddedEtcd }
        let fleet: AgentFleet
        do {
            fleet = try await session.fleet(for: reading)
        } catch {
            return .unknown(Self.text(error))
        }
        let reader = ClusterGateReader(settings: session.config.gates, kube: session.kube, fleet: fleet, http: nil)
        let report = await reader.read(GateQuestion(kinds: [.etcd], etcdNodes: members))
        return report.etcd ?? .unknown("not read")
    }

    private func unfinishedRollout() -> ClusterValidationObservations.Rollout? {
        guard let store, let record = try? store.unfinishedRollout() else { return nil }
        let cordoned = (try? store.engine(rolloutID: record.id).cordonedByUpkeep) ?? []
        return ClusterValidationObservations.Rollout(id: record.id, target: record.target.description, status: record.outcomeText, cordoned: cordoned)
    }

    // MARK: - flux

    static let fluxNamespace = "flux-system"

    func flux() async -> FluxValidationObservations {
        let kube = session.kube
        let objects: ValidationReading<[FluxValidationObservations.Object]> = await Self.reading {
            var objects: [FluxValidationObservations.Object] = []
            for type in [FluxSuspendKind.gitrepositories, .kustomizations, .helmreleases] {
                for object in try await Self.fluxObjects(kube, type) {
                    let ready = object.condition("Ready")
                    objects.append(FluxValidationObservations.Object(
                        ref: FluxObjectRef(kind: type, namespace: object.namespace ?? "default", name: object.name).description,
                        suspended: object.suspended, ready: ready?.status, reason: ready?.reason ?? "", message: ready?.message ?? "",
                        generation: object.generation, observedGeneration: object.observedGeneration))
                }
            }
            return objects
        }
        let controllers: ValidationReading<[FluxValidationObservations.Controller]> = await Self.reading {
            try await kube.list(Deployment.self, namespace: Self.fluxNamespace, labelSelector: LabelSelector(matching: ["app.kubernetes.io/part-of": "flux"]))
                .sorted { $0.name < $1.name }
                .map { FluxValidationObservations.Controller(name: $0.name, replicas: Int($0.replicas), available: Int($0.availableReplicas),
                                                             availableCondition: $0.condition("Available")?.isTrue ?? false) }
        }
        let maintenance: ValidationReading<FluxValidationObservations.Maintenance?> = await Self.reading {
            let json: JSON
            do {
                json = try await kube.get(.configMaps, MaintenanceRecord.name, namespace: MaintenanceRecord.namespace)
            } catch let error as KubeAPIError where error.isNotFound {
                return nil
            }
            let period = try MaintenanceRecord.period(json)
            return FluxValidationObservations.Maintenance(id: period.id, suspended: Set(period.suspended))
        }
        return FluxValidationObservations(objects: objects, controllers: controllers, maintenance: maintenance)
    }

    /// The objects of one Flux kind in every namespace; its CRD absent says Flux is not installed.
    private static func fluxObjects(_ kube: KubeClient, _ kind: FluxSuspendKind) async throws -> [any FluxObject] {
        do {
            switch kind {
            case .gitrepositories: return try await kube.list(FluxGitRepository.self)
            case .kustomizations: return try await kube.list(FluxKustomization.self)
            case .helmreleases: return try await kube.list(FluxHelmRelease.self)
            }
        } catch let error as KubeAPIError where error.code == 404 {
            throw ValidationReadError("the API has no \(kind.resource.qualifiedName): Flux is not installed")
        }
    }

    // MARK: - storage

    func storage(nodes: [String], rebuildSecondsMax: Int) async -> StorageValidationObservations {
        let kube = session.kube
        let namespace = InventoryMapping.longhornNamespace
        let managers: ValidationReading<Set<String>> = await Self.reading {
            let pods = try await kube.list(Pod.self, namespace: namespace, labelSelector: LabelSelector(matching: ["app": "longhorn-manager"]))
            return Set(pods.filter { $0.isReady && !$0.isTerminating }.compactMap(\.nodeName))
        }
        let instanceManagers: ValidationReading<[String: String]> = await Self.reading {
            var states: [String: String] = [:]
            let managers = try await Self.longhorn { try await kube.list(.longhornInstanceManagers, namespace: namespace) }
            for manager in managers {
                guard let node = manager[path: "spec", "nodeID"]?.string, !node.isEmpty else { continue }
                let state = manager[path: "status", "currentState"]?.string ?? "unknown"
                if states[node] != "running" { states[node] = state }
            }
            return states
        }
        let volumes: ValidationReading<[StorageValidationObservations.Volume]> = await Self.reading {
            let volumes = try await Self.longhorn { try await kube.list(LonghornVolume.self, namespace: namespace) }
            let replicas = try await Self.longhorn { try await kube.list(LonghornReplica.self, namespace: namespace) }
            var byVolume: [String: [StorageValidationObservations.Replica]] = [:]
            for replica in replicas.sorted(by: { $0.name < $1.name }) where !replica.nodeID.isEmpty && replica.deletionTimestamp == nil {
                let since = replica.failedAt.isEmpty ? replica.creationTimestamp : KubeTime.parse(replica.failedAt)
                byVolume[replica.volumeName, default: []].append(StorageValidationObservations.Replica(
                    name: replica.name, node: replica.nodeID, running: replica.currentState == "running", complete: replica.isHealthy,
                    incompleteSince: replica.isHealthy ? nil : since))
            }
            return volumes.sorted { $0.name < $1.name }.map { volume in
                StorageValidationObservations.Volume(name: volume.name, state: volume.state.isEmpty ? "creating" : volume.state, robustness: volume.robustness,
                                                     attachedNode: volume.currentNodeID.isEmpty ? nil : volume.currentNodeID,
                                                     replicasWanted: Int(volume.numberOfReplicas), replicas: byVolume[volume.name] ?? [])
            }
        }
        let drainPolicy: ValidationReading<String?> = await Self.reading {
            do {
                return try await kube.get(LonghornSetting.self, "node-drain-policy", namespace: namespace).value
            } catch let error as KubeAPIError where error.isNotFound {
                return nil
            }
        }
        return StorageValidationObservations(nodes: nodes, managersReady: managers, instanceManagers: instanceManagers, volumes: volumes,
                                             drainPolicy: drainPolicy, now: Instant.wallClockNow().unixSeconds, rebuildSecondsMax: rebuildSecondsMax)
    }

    /// A Longhorn list; its CRD absent says Longhorn is not installed.
    private static func longhorn<T>(_ body: () async throws -> [T]) async throws -> [T] {
        do { return try await body() } catch let error as KubeAPIError where error.code == 404 {
            throw ValidationReadError("the API has no longhorn.io resources: Longhorn is not installed")
        }
    }

    // MARK: - networking

    /// k3s's packaged CoreDNS and Traefik, by the names k3s deploys them under
    /// (https://docs.k3s.io/networking/networking-services).
    func networking() async -> NetworkingValidationObservations {
        NetworkingValidationObservations(dns: await deployment("kube-system", "coredns"), ingress: await deployment("kube-system", "traefik"))
    }

    /// The API's Service name, in k3s's default cluster domain (`--cluster-domain cluster.local`,
    /// https://docs.k3s.io/cli/server#networking).
    static let apiServiceName = "kubernetes.default.svc.cluster.local"

    /// Every node's agent asked to resolve the API's Service name through its cluster DNS
    /// (`ClusterDNSSurvey`), and the Service `default/kubernetes`'s clusterIP the answers must be.
    func dnsFromNodes(_ reading: FleetReading?) async -> DNSFromNodesObservations {
        let kube = session.kube
        let expected: ValidationReading<String> = await Self.reading {
            let service = try await kube.get(.services, "kubernetes", namespace: "default")
            guard let clusterIP = service[path: "spec", "clusterIP"]?.string, !clusterIP.isEmpty else {
                throw ValidationReadError("the Service default/kubernetes has no spec.clusterIP")
            }
            return clusterIP
        }
        guard let reading else {
            return DNSFromNodesObservations(name: Self.apiServiceName, expected: expected, nodes: .unreadable("the nodes could not be read"))
        }
        let fleet: AgentFleet
        do {
            fleet = try await session.fleet(for: reading)
        } catch {
            return DNSFromNodesObservations(name: Self.apiServiceName, expected: expected, nodes: .unreadable(Self.text(error)))
        }
        let nodes = await ClusterDNSSurvey(fleet: fleet).ask(reading.nodes.map(\.node.name), name: Self.apiServiceName)
        return DNSFromNodesObservations(name: Self.apiServiceName, expected: expected, nodes: .read(nodes))
    }

    /// Bound on each connect an agent makes for `networking/node-to-node`.
    static let nodeToNodeConnectSeconds = 3

    /// `networking/node-to-node`: every node's kubelet endpoint (InternalIP, and the port the
    /// Node reports, 10250 when absent), and each node's agent asked to connect to its peers'
    /// (`NodeToNodePlan`: every other node, at most 64), the agents asked at once, bounded
    /// (`PeerReachability`).
    func nodeToNode(_ reading: FleetReading?) async -> NodeToNodeObservations {
        let targets: [NodeToNodeObservations.Target]
        do {
            targets = try await session.kube.list(Node.self).sorted { $0.name < $1.name }.map { node in
                NodeToNodeObservations.Target(node: node.name, host: node.internalIP.flatMap { $0.isEmpty ? nil : $0 },
                                              port: node.kubeletPort ?? 10250)
            }
        } catch {
            return NodeToNodeObservations(targets: .unreadable(Self.text(error)), probers: [])
        }
        let byName = Dictionary(targets.map { ($0.node, $0) }, uniquingKeysWith: { first, _ in first })
        var asked: [String: [ReachPeer]] = [:]
        for (node, peers) in NodeToNodePlan.peers(of: targets.map(\.node)) {
            asked[node] = peers.compactMap { peer in byName[peer].flatMap { target in target.host.map { ReachPeer(node: peer, host: $0, port: target.port) } } }
        }
        let answers: [String: PeerReachability.Answer]
        do {
            guard let reading else { throw ValidationReadError("the nodes could not be read, so neither could their agents be found") }
            let fleet = try await session.fleet(for: reading)
            answers = await PeerReachability.ask(fleet, peers: asked, timeoutSeconds: Self.nodeToNodeConnectSeconds)
        } catch {
            let why = Self.text(error)
            return NodeToNodeObservations(targets: .read(targets), probers: targets.map { .init(node: $0.node, answer: .notAsked(why)) })
        }
        let probers = targets.compactMap { target -> NodeToNodeObservations.Prober? in
            guard let peers = asked[target.node], !peers.isEmpty else { return nil }
            switch answers[target.node] {
            case .answered(let results):
                return .init(node: target.node, answer: .answered(results.map {
                    .init(to: $0.node, outcome: NodeToNodeObservations.Outcome(rawValue: $0.outcome.rawValue) ?? .unreachable, message: $0.message)
                }))
            case .agentTooOld(let why): return .init(node: target.node, answer: .agentTooOld(why))
            case .failed(let why): return .init(node: target.node, answer: .notAsked(why))
            case nil: return .init(node: target.node, answer: .notAsked("not asked"))
            }
        }
        return NodeToNodeObservations(targets: .read(targets), probers: probers)
    }

    private func deployment(_ namespace: String, _ name: String) async -> ValidationReading<WorkloadObservation?> {
        await workload(.deployment, namespace, name)
    }

    /// A Deployment's or DaemonSet's rollout fields (a DaemonSet's replicas are the nodes it
    /// should run on); nil when it does not exist.
    private func workload(_ kind: WorkloadObservation.Kind, _ namespace: String, _ name: String) async -> ValidationReading<WorkloadObservation?> {
        let kube = session.kube
        return await Self.reading {
            do {
                switch kind {
                case .deployment:
                    let deployment = try await kube.get(Deployment.self, name, namespace: namespace)
                    return WorkloadObservation(kind: kind, namespace: namespace, name: name, replicas: Int(deployment.replicas),
                                               updated: Int(deployment.updatedReplicas), available: Int(deployment.availableReplicas),
                                               observedCurrent: Self.observedGeneration(deployment) >= deployment.generation)
                case .daemonSet:
                    let daemonSet = try await kube.get(DaemonSet.self, name, namespace: namespace)
                    return WorkloadObservation(kind: kind, namespace: namespace, name: name, replicas: Int(daemonSet.desiredNumberScheduled),
                                               updated: Int(daemonSet.updatedNumberScheduled), available: Int(daemonSet.numberAvailable),
                                               observedCurrent: Self.observedGeneration(daemonSet) >= daemonSet.generation)
                case .statefulSet:
                    // A rolling update is finished when every pod is at the update revision, as
                    // `kubectl rollout status` waits for (current and update revision equal).
                    let statefulSet = try await kube.get(StatefulSet.self, name, namespace: namespace)
                    return WorkloadObservation(kind: kind, namespace: namespace, name: name, replicas: Int(statefulSet.replicas),
                                               updated: Int(statefulSet.updatedReplicas), available: Int(statefulSet.availableReplicas),
                                               observedCurrent: Self.observedGeneration(statefulSet) >= statefulSet.generation
                                                   && statefulSet.revisionsAgree)
                }
            } catch let error as KubeAPIError where error.isNotFound {
                return nil
            }
        }
    }

    private static func observedGeneration(_ object: some KubeObject) -> Int64 {
        object.json[path: "status", "observedGeneration"]?.int ?? 0
    }

    // MARK: - applications

    /// The workloads and URLs `validate.applications` declares; each URL asked once with a
    /// GET bounded by its timeout (connection included), no redirect followed.
    func applications(_ declared: ApplicationChecks) async -> ApplicationValidationObservations {
        var workloads: [ApplicationValidationObservations.Workload] = []
        var probes: [ApplicationValidationObservations.Probe] = []
        var queries: [ApplicationValidationObservations.Query] = []
        for check in declared.checks {
            switch check {
            case .workload(let kind, let namespace, let name):
                workloads.append(ApplicationValidationObservations.Workload(kind: kind, namespace: namespace, name: name,
                                                                            reading: await workload(kind, namespace, name)))
            case .url(let url):
                probes.append(ApplicationValidationObservations.Probe(url: url.url, expectedStatus: url.status, answer: await Self.status(of: url)))
            case .query(let query):
                queries.append(ApplicationValidationObservations.Query(query: query.query, below: query.below, emptyIsHealthy: query.emptyIsHealthy,
                                                                       answer: await samples(of: query.query)))
            }
        }
        return ApplicationValidationObservations(workloads: workloads, probes: probes, queries: queries)
    }

    /// One instant query to `gates.prometheus`, as `upkeep metrics --query` asks it (one try,
    /// bounded by the gate's timeout and `PrometheusQuery.responseBytesMax`).
    private func samples(of query: String) async -> ValidationReading<[ApplicationValidationObservations.Query.Sample]> {
        guard let gate = session.config.gates.prometheus else { return .unreadable("\(PrometheusQueryError.notConfigured)") }
        do {
            let result = try await PrometheusQuery(base: gate.url, query: query, time: nil, timeoutSeconds: gate.timeoutSeconds).run(caFile: gate.caFile)
            return .read(result.series.flatMap { series in
                let labels = series.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",")
                return series.samples.map { ApplicationValidationObservations.Query.Sample(series: labels.isEmpty ? "" : "{\(labels)}", value: $0.value) }
            })
        } catch {
            return .unreadable(error.description)
        }
    }

    private static func status(of check: ApplicationChecks.URLCheck) async -> ValidationReading<Int> {
        let client: HTTPClient
        do {
            client = try HTTPClient.oneShot(caFile: check.caFile, timeoutSeconds: check.timeoutSeconds, responseBytesMax: 1 << 20)
        } catch {
            return .unreadable("validate.applications caFile \(check.caFile ?? ""): \(error)")
        }
        let answer: ValidationReading<Int>
        do {
            let response = try await client.send(HTTPRequest(url: try HTTPURL(check.url), timeoutSeconds: Double(check.timeoutSeconds)))
            answer = .read(Int(response.status))
        } catch {
            answer = .unreadable("\(error)")
        }
        await client.shutdown()
        return answer
    }

    // MARK: - versions

    /// What the last rollout and the last update of Longhorn and Flux meant, from the state
    /// database, and what runs now: the nodes' kubelet versions, the installed Longhorn and Flux
    /// (read as `upkeep check` reads them).
    func versions() async -> VersionValidationObservations {
        guard let store else { return VersionValidationObservations(meant: [], running: .read([:]), history: .unreadable(storeProblem ?? "not opened")) }
        var meant: [VersionValidationObservations.Meant] = []
        do {
            if let rollout = try store.history(limit: 1).first { meant.append(Self.meant(rollout)) }
            let updates = try store.componentUpdates(limit: 200)
            for component in ["longhorn", "flux"] {
                if let update = updates.first(where: { $0.component == component }) { meant.append(Self.meant(update)) }
            }
        } catch {
            return VersionValidationObservations(meant: [], running: .read([:]), history: .unreadable(error.description))
        }
        let kube = session.kube
        let running = await Self.reading { () async throws -> [String: String] in
            let components: Set<Component> = Set(meant.compactMap { Component(rawValue: $0.component) }).subtracting([.k3s])
            let installed = try await ClusterInventory(client: kube).read(components)
            var running: [String: String] = [:]
            for node in installed.k3s.nodes { running[node.name] = node.kubeletVersion }
            if let version = installed.longhorn?.version { running["longhorn"] = version.description }
            if let version = installed.flux?.version { running["flux"] = version.description }
            return running
        }
        return VersionValidationObservations(meant: meant, running: running)
    }

    /// A completed rollout meant each moved node at its last step's version; one rolled back,
    /// each at the version it started from. Any other end meant no version.
    static func meant(_ rollout: RolloutRecord) -> VersionValidationObservations.Meant {
        let forward = rollout.steps.map(\.progress).filter { !$0.isRollback }
        var versions: [String: String] = [:]
        switch rollout.outcome {
        case .completed:
            for step in forward { versions[step.node] = step.to.description }
            return .init(component: "k3s", operation: "rollout \(rollout.id) (completed, to \(rollout.target))", versions: versions)
        case .rolledBack:
            for step in forward.reversed() { versions[step.node] = step.from.description }
            return .init(component: "k3s", operation: "rollout \(rollout.id) (rolled back)", versions: versions)
        case .failed(let cause):
            return .init(component: "k3s", operation: "rollout \(rollout.id)", versions: [:], problem: "failed: \(cause)",
                         action: "`upkeep status` shows where each node is; `upkeep rollback \(rollout.id)` takes them back, or fix the cause and `upkeep apply` again")
        case .abandoned(let reason):
            return .init(component: "k3s", operation: "rollout \(rollout.id)", versions: [:], problem: "was abandoned: \(reason)",
                         action: "`upkeep plan` and `upkeep apply` bring the nodes to one version again")
        case nil:
            return .init(component: "k3s", operation: "rollout \(rollout.id)", versions: [:], problem: "is unfinished (\(rollout.outcomeText))",
                         action: "`upkeep resume` finishes it, `upkeep rollback` undoes it")
        }
    }

    /// A completed update meant its new version; a reverted one its old version. Any other end
    /// meant no version.
    static func meant(_ update: ComponentUpdateRecord) -> VersionValidationObservations.Meant {
        let operation = "update \(update.id) of \(update.component)"
        switch update.outcome {
        case .completed:
            return .init(component: update.component, operation: "\(operation) (completed, to \(update.to))", versions: [update.component: update.to])
        case .reverted:
            return .init(component: update.component, operation: "\(operation) (reverted)", versions: [update.component: update.from])
        case .running:
            return .init(component: update.component, operation: operation, versions: [:], problem: "is unfinished",
                         action: "`upkeep update --component \(update.component) --to \(update.to)` carries it on (docs/gitops.md)")
        default:
            return .init(component: update.component, operation: operation, versions: [:],
                         problem: "ended \(update.outcome.rawValue)\(update.message.isEmpty ? "" : ": \(update.message)")",
                         action: "`upkeep history --updates` shows it; docs/gitops.md says how to go on")
        }
    }

    // MARK: - helpers

    private static func reading<T: Equatable & Sendable>(_ body: () async throws -> T) async -> ValidationReading<T> {
        do { return .read(try await body()) } catch { return .unreadable(text(error)) }
    }

    private static func text(_ error: any Error) -> String {
        (error as? CommandFailure)?.message ?? "\(error)"
    }
}

/// A reason a reading is unreadable that is not an API error (a kind that is not installed).
struct ValidationReadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
