import Testing
import UpkeepRollout

/// `upkeep validate`'s verdicts from observations: each check healthy on a healthy cluster, and
/// each broken by the one thing it is there to notice, naming it and saying what to do.
@Suite struct ValidationVerdictTests {
    typealias Node = ClusterValidationObservations.Node

    static let version = "v1.31.4+k3s1"
    static let servers = ["server-1", "server-2", "server-3"]
    static let members = servers.map { (server: String) in EtcdMemberHealth(name: server + "-0a1b2c3d", node: server, healthy: true) }

    static func nodes(_ change: (inout [Node]) -> Void = { _ in }) -> [Node] {
        var nodes = ["server-1", "server-2", "server-3"].map { Node(name: $0, server: true, ready: true, version: version, cordoned: false) }
            + [Node(name: "agent-1", server: false, ready: true, version: version, cordoned: false)]
        change(&nodes)
        return nodes
    }

    static func cluster(nodes: [Node] = nodes(), rollout: ClusterValidationObservations.Rollout? = nil,
                        etcd: EtcdReading = .members(members, askedNode: "server-1")) -> [String: ValidationResult] {
        let results = ValidationVerdicts.cluster(ClusterValidationObservations(nodes: .read(nodes), rollout: rollout, etcd: etcd))
        #expect(results.map(\.name) == ["cluster/ready", "cluster/version", "cluster/cordons", "cluster/etcd"])
        return Dictionary(uniqueKeysWithValues: results.map { ($0.check, $0) })
    }

    @Test func aHealthyClusterPassesEveryCheck() {
        let results = Self.cluster()
        #expect(results.values.allSatisfy { $0.isHealthy }, "\(results)")
        #expect(results["ready"]?.summary == "4 of 4 nodes Ready")
        #expect(results["version"]?.summary == "every node runs v1.31.4+k3s1")
        #expect(results["etcd"]?.summary == "3 of 3 members healthy (asked server-1)")
        #expect(results.values.allSatisfy { $0.action == nil })
    }

    @Test func aNodeNotReadyIsNamed() {
        let result = Self.cluster(nodes: Self.nodes { $0[3].ready = false })["ready"]
        #expect(result?.verdict == .unhealthy && result?.summary == "1 of 4 nodes not Ready: agent-1")
        #expect(result?.evidence.contains("agent-1 (agent): NotReady") == true && result?.action?.contains("`-u k3s-agent` on an agent") == true)
    }

    @Test func twoVersionsNameTheUnfinishedRolloutOrSayThereIsNone() {
        let mixed = Self.nodes { $0[0].version = "v1.32.4+k3s1" }
        let alone = Self.cluster(nodes: mixed)["version"]
        #expect(alone?.verdict == .unhealthy && alone?.summary == "nodes run 2 versions and no rollout of this controller is unfinished")
        #expect(alone?.evidence == ["v1.31.4+k3s1: server-2, server-3, agent-1", "v1.32.4+k3s1: server-1"])
        let rollout = ClusterValidationObservations.Rollout(id: "r-42", target: "v1.32.4+k3s1", status: "blocked: agent-1 unhealthy", cordoned: [])
        let during = Self.cluster(nodes: mixed, rollout: rollout)["version"]
        #expect(during?.verdict == .unhealthy
                && during?.summary == "nodes run 2 versions; rollout r-42 to v1.32.4+k3s1 is unfinished (blocked: agent-1 unhealthy)")
        #expect(during?.action?.contains("upkeep resume") == true)
    }

    @Test func aCordonUpkeepDidNotMakeIsUnhealthyAndOneItMadeIsNot() {
        let cordoned = Self.nodes { $0[3].cordoned = true }
        let unexpected = Self.cluster(nodes: cordoned)["cordons"]
        #expect(unexpected?.verdict == .unhealthy && unexpected?.summary == "cordoned, not by Upkeep: agent-1")
        #expect(unexpected?.action == "if nobody is working on it, uncordon: `kubectl uncordon agent-1`")
        let rollout = ClusterValidationObservations.Rollout(id: "r-7", target: Self.version, status: "running", cordoned: ["agent-1"])
        let expected = Self.cluster(nodes: cordoned, rollout: rollout)["cordons"]
        #expect(expected?.verdict == .healthy && expected?.evidence == ["agent-1: cordoned by rollout r-7 (running)"])
        // A rollout that cordoned another node does not explain this one.
        let other = ClusterValidationObservations.Rollout(id: "r-7", target: Self.version, status: "running", cordoned: ["server-1"])
        #expect(Self.cluster(nodes: cordoned, rollout: other)["cordons"]?.verdict == .unhealthy)
    }

    @Test func etcdMembersAreJudgedAsTheGateJudgesThem() {
        var members = Self.members
        members[2].healthy = false
        members[2].message = "no answer within 3 s"
        let one = Self.cluster(etcd: .members(members, askedNode: "server-1"))["etcd"]
        #expect(one?.verdict == .unhealthy
                && one?.summary == "member not healthy: server-3-0a1b2c3d (server-3): no answer within 3 s; 2 of 3 members healthy (asked server-1)")
        #expect(one?.evidence.last == "server-3-0a1b2c3d (server-3): not healthy: no answer within 3 s")
        members[1].healthy = false
        #expect(Self.cluster(etcd: .members(members, askedNode: "server-1"))["etcd"]?.summary == "no quorum: 1 of 3 members healthy (asked server-1)")
        let unknown = Self.cluster(etcd: .unknown("server-1: connection refused"))["etcd"]
        #expect(unknown?.verdict == .unknown && unknown?.summary == "health unknown: server-1: connection refused" && !(unknown?.isHealthy ?? true))
        #expect(Self.cluster(etcd: .noEmbeddedEtcd)["etcd"]?.verdict == .healthy)
    }

    @Test func unreadableNodesAreUnknownNeverHealthy() {
        let results = ValidationVerdicts.cluster(ClusterValidationObservations(nodes: .unreadable("connection refused"), rollout: nil, etcd: .unknown("no nodes")))
        #expect(results.count == 4 && results.allSatisfy { $0.verdict == .unknown } && !results.allHealthy)
        #expect(results[0].summary == "cannot read the nodes: connection refused")
    }

    // MARK: - flux

    typealias FluxObject = FluxValidationObservations.Object

    static func fluxObjects(_ change: (inout [FluxObject]) -> Void = { _ in }) -> [FluxObject] {
        var objects = ["GitRepository/flux-system/flux-system", "Kustomization/flux-system/flux-system", "Kustomization/flux-system/apps",
                       "HelmRelease/default/podinfo"].map {
            FluxObject(ref: $0, suspended: false, ready: "True", reason: "Succeeded", generation: 2, observedGeneration: 2)
        }
        change(&objects)
        return objects
    }

    static let controllers = ["helm-controller", "kustomize-controller", "source-controller"].map {
        FluxValidationObservations.Controller(name: $0, replicas: 1, available: 1, availableCondition: true)
    }

    static func flux(objects: [FluxObject] = fluxObjects(), controllers: [FluxValidationObservations.Controller] = controllers,
                     maintenance: FluxValidationObservations.Maintenance? = nil) -> [String: ValidationResult] {
        let results = ValidationVerdicts.flux(FluxValidationObservations(objects: .read(objects), controllers: .read(controllers), maintenance: .read(maintenance)))
        #expect(results.map(\.name) == ["flux/controllers", "flux/ready", "flux/suspended"])
        return Dictionary(uniqueKeysWithValues: results.map { ($0.check, $0) })
    }

    @Test func healthyFluxPasses() {
        let results = Self.flux()
        #expect(results.values.allSatisfy { $0.isHealthy }, "\(results)")
        #expect(results["ready"]?.summary == "4 GitRepositories, Kustomizations and HelmReleases Ready at their generation")
    }

    @Test func aControllerScaledToZeroOrUnavailableIsNamed() {
        var controllers = Self.controllers
        controllers[2].replicas = 0
        controllers[2].available = 0
        controllers[0].available = 0
        controllers[0].availableCondition = false
        let result = Self.flux(controllers: controllers)["controllers"]
        #expect(result?.verdict == .unhealthy && result?.summary == "not available: helm-controller, source-controller (scaled to 0)")
        #expect(Self.flux(controllers: [])["controllers"]?.verdict == .unhealthy)
    }

    @Test func notReadyOrAnOldGenerationIsNamedWithFluxsReason() {
        let objects = Self.fluxObjects {
            $0[2].ready = "False"
            $0[2].reason = "ReconciliationFailed"
            $0[2].message = "kustomize build failed"
            $0[3].observedGeneration = 1
        }
        let result = Self.flux(objects: objects)["ready"]
        #expect(result?.verdict == .unhealthy
                && result?.summary == "2 of 4 not Ready at their generation: Kustomization/flux-system/apps, HelmRelease/default/podinfo")
        #expect(result?.evidence == ["Kustomization/flux-system/apps: Ready False (ReconciliationFailed: kustomize build failed)",
                                     "HelmRelease/default/podinfo: Ready True, observedGeneration 1 of generation 2 (Succeeded)"])
    }

    @Test func suspendedIsUnhealthyUnlessMaintenanceModeSuspendedIt() {
        let objects = Self.fluxObjects {
            $0[2].suspended = true
            $0[2].observedGeneration = 1  // the suspend itself is a new generation Flux does not reconcile
            $0[3].suspended = true
        }
        let alone = Self.flux(objects: objects)
        #expect(alone["suspended"]?.verdict == .unhealthy
                && alone["suspended"]?.summary == "suspended, not by maintenance mode: Kustomization/flux-system/apps, HelmRelease/default/podinfo")
        #expect(alone["suspended"]?.action == "if nobody suspended them on purpose, resume: `flux resume kustomization apps -n flux-system`, "
                + "`flux resume helmrelease podinfo -n default`")
        #expect(alone["ready"]?.isHealthy == true, "a suspended object is judged by flux/suspended only")

        let maintenance = FluxValidationObservations.Maintenance(id: "m-1", suspended: ["Kustomization/flux-system/apps", "HelmRelease/default/podinfo"])
        let during = Self.flux(objects: objects, maintenance: maintenance)["suspended"]
        #expect(during?.verdict == .healthy && during?.evidence == ["Kustomization/flux-system/apps: suspended by maintenance mode m-1",
                                                                    "HelmRelease/default/podinfo: suspended by maintenance mode m-1"])
        // Suspended before maintenance mode: its record does not name it as its own.
        let partly = FluxValidationObservations.Maintenance(id: "m-1", suspended: ["Kustomization/flux-system/apps"])
        #expect(Self.flux(objects: objects, maintenance: partly)["suspended"]?.summary == "suspended, not by maintenance mode: HelmRelease/default/podinfo")
    }

    @Test func fluxNotInstalledIsNotHealthy() {
        let results = ValidationVerdicts.flux(FluxValidationObservations(objects: .unreadable("Flux is not installed"), controllers: .read([]),
                                                                         maintenance: .read(nil)))
        #expect(results.allSatisfy { !$0.isHealthy })
    }

    // MARK: - storage

    typealias Volume = StorageValidationObservations.Volume
    typealias Replica = StorageValidationObservations.Replica
    static let storageNodes = ["server-1", "agent-1", "agent-2"]
    static let now = 1_800_000_000.0

    static func volumes(_ change: (inout [Volume]) -> Void = { _ in }) -> [Volume] {
        var volumes = [
            Volume(name: "pvc-a", state: "attached", robustness: "healthy", attachedNode: "agent-1", replicasWanted: 2,
                   replicas: [Replica(name: "pvc-a-r-1", node: "agent-1", running: true, complete: true),
                              Replica(name: "pvc-a-r-2", node: "agent-2", running: true, complete: true)]),
            Volume(name: "pvc-d", state: "detached", robustness: "unknown", attachedNode: nil, replicasWanted: 2,
                   replicas: [Replica(name: "pvc-d-r-1", node: "server-1", running: false, complete: true),
                              Replica(name: "pvc-d-r-2", node: "agent-2", running: false, complete: true)]),
        ]
        change(&volumes)
        return volumes
    }

    static func storage(volumes: [Volume] = volumes(), managers: Set<String> = Set(storageNodes),
                        instanceManagers: [String: String] = Dictionary(uniqueKeysWithValues: storageNodes.map { ($0, "running") }),
                        drainPolicy: String? = "block-if-contains-last-replica", rebuildSecondsMax: Int = 1800) -> [String: ValidationResult] {
        let results = ValidationVerdicts.storage(StorageValidationObservations(
            nodes: storageNodes, managersReady: .read(managers), instanceManagers: .read(instanceManagers), volumes: .read(volumes),
            drainPolicy: .read(drainPolicy), now: now, rebuildSecondsMax: rebuildSecondsMax))
        #expect(results.map(\.name) == ["storage/managers", "storage/instance-managers", "storage/attached", "storage/detached", "storage/rebuilds",
                                        "storage/drain-policy"])
        return Dictionary(uniqueKeysWithValues: results.map { ($0.check, $0) })
    }

    @Test func healthyLonghornPassesAndNamesTheDrainPolicy() {
        let results = Self.storage()
        #expect(results.values.allSatisfy { $0.isHealthy }, "\(results)")
        #expect(results["drain-policy"]?.summary
                == "node-drain-policy block-if-contains-last-replica: a drain waits while the node holds a volume's last healthy replica")
        #expect(Self.storage(drainPolicy: nil)["drain-policy"]?.summary.contains("(Longhorn's default)") == true)
    }

    @Test func aNodeWithoutItsManagerOrInstanceManagerIsNamed() {
        let results = Self.storage(managers: ["server-1", "agent-2"], instanceManagers: ["server-1": "running", "agent-1": "stopped"])
        #expect(results["managers"]?.verdict == .unhealthy && results["managers"]?.summary == "longhorn-manager not running and Ready on agent-1")
        #expect(results["instance-managers"]?.summary == "no running instance manager on agent-1, agent-2")
        #expect(results["instance-managers"]?.evidence == ["server-1: running", "agent-1: stopped", "agent-2: none"])
    }

    @Test func aDegradedAttachedVolumeAndALongRebuildAreNamed() {
        let volumes = Self.volumes {
            $0[0].robustness = "degraded"
            $0[0].replicas[1].complete = false
            $0[0].replicas[1].incompleteSince = Self.now - 600
        }
        let short = Self.storage(volumes: volumes)
        #expect(short["attached"]?.verdict == .unhealthy && short["attached"]?.summary == "1 of 1 attached volumes not healthy: pvc-a")
        #expect(short["attached"]?.evidence == ["pvc-a: attached on agent-1, degraded, 1 of 2 replicas complete and running"])
        #expect(short["rebuilds"]?.verdict == .healthy && short["rebuilds"]?.evidence == ["pvc-a-r-2 of pvc-a on agent-2: rebuilding for 10 min"])
        let long = Self.storage(volumes: volumes, rebuildSecondsMax: 300)["rebuilds"]
        #expect(long?.verdict == .unhealthy && long?.summary == "1 replicas rebuilding longer than 5 min: pvc-a-r-2")
    }

    @Test func aDetachedVolumeShortOfCompleteReplicasIsNamed() {
        let result = Self.storage(volumes: Self.volumes { $0[1].replicas[0].complete = false })["detached"]
        #expect(result?.verdict == .unhealthy && result?.summary == "1 of 1 detached volumes short of complete replicas: pvc-d")
        #expect(result?.evidence == ["pvc-d: 1 of 2 replicas complete (pvc-d-r-1 on server-1: failed, pvc-d-r-2 on agent-2: complete)"])
    }

    // MARK: - networking

    static func networking(dns: WorkloadObservation?, ingress: WorkloadObservation?) -> [String: ValidationResult] {
        let results = ValidationVerdicts.networking(NetworkingValidationObservations(dns: .read(dns), ingress: .read(ingress)))
        #expect(results.map(\.name) == ["networking/dns", "networking/ingress"])
        return Dictionary(uniqueKeysWithValues: results.map { ($0.check, $0) })
    }

    static let coredns = WorkloadObservation(namespace: "kube-system", name: "coredns", replicas: 2, updated: 2, available: 2, observedCurrent: true)
    static let traefik = WorkloadObservation(namespace: "kube-system", name: "traefik", replicas: 1, updated: 1, available: 1, observedCurrent: true)

    @Test func coreDNSAndTraefikAvailablePass() {
        let results = Self.networking(dns: Self.coredns, ingress: Self.traefik)
        #expect(results.values.allSatisfy { $0.isHealthy }, "\(results)")
        #expect(results["dns"]?.summary == "CoreDNS available: 2 of 2 (Deployment/kube-system/coredns)")
    }

    @Test func coreDNSShortScaledToZeroStaleOrAbsentIsNamed() {
        var short = Self.coredns
        short.available = 1
        let shortResult = Self.networking(dns: short, ingress: Self.traefik)["dns"]
        #expect(shortResult?.verdict == .unhealthy && shortResult?.summary == "CoreDNS not fully available: 1 of 2 (Deployment/kube-system/coredns)")
        #expect(shortResult?.action == "`kubectl -n kube-system describe deployment coredns` and its pods' events")
        var zero = Self.traefik
        zero.replicas = 0
        zero.available = 0
        #expect(Self.networking(dns: Self.coredns, ingress: zero)["ingress"]?.summary == "Traefik is scaled to 0 (Deployment/kube-system/traefik)")
        var stale = Self.coredns
        stale.observedCurrent = false
        #expect(Self.networking(dns: stale, ingress: Self.traefik)["dns"]?.verdict == .unhealthy)
        let absent = Self.networking(dns: nil, ingress: nil)
        #expect(absent["dns"]?.summary == "CoreDNS is not deployed" && absent["ingress"]?.action?.contains("--disable traefik") == true)
    }

    // MARK: - applications

    @Test func declaredWorkloadsAndURLsAreEachAResult() {
        var web = WorkloadObservation(namespace: "default", name: "web", replicas: 2, updated: 2, available: 2, observedCurrent: true)
        let agents = WorkloadObservation(kind: .daemonSet, namespace: "monitoring", name: "node-exporter", replicas: 3, updated: 2, available: 3,
                                         observedCurrent: true)
        let observed = ApplicationValidationObservations(
            workloads: [.init(kind: .deployment, namespace: "default", name: "web", reading: .read(web)),
                        .init(kind: .daemonSet, namespace: "monitoring", name: "node-exporter", reading: .read(agents)),
                        .init(kind: .deployment, namespace: "shop", name: "cart", reading: .read(nil))],
            probes: [.init(url: "https://shop.example/healthz", expectedStatus: 200, answer: .read(200)),
                     .init(url: "https://shop.example/ready", expectedStatus: 204, answer: .read(503)),
                     .init(url: "https://down.example/", expectedStatus: 200, answer: .unreadable("connection refused"))])
        let results = ValidationVerdicts.applications(observed)
        #expect(results.map(\.name) == ["applications/Deployment/default/web", "applications/DaemonSet/monitoring/node-exporter",
                                        "applications/Deployment/shop/cart", "applications/GET https://shop.example/healthz",
                                        "applications/GET https://shop.example/ready", "applications/GET https://down.example/"])
        #expect(results.map(\.verdict) == [.healthy, .unhealthy, .unhealthy, .healthy, .unhealthy, .unhealthy])
        #expect(results[1].summary == "node-exporter not fully available: 3 of 3 (DaemonSet/monitoring/node-exporter)")
        #expect(results[1].action == "`kubectl -n monitoring describe daemonset node-exporter` and its pods' events")
        #expect(results[2].summary == "cart is not deployed" && results[2].action?.contains("validate.applications") == true)
        #expect(results[4].summary == "answered 503, expected 204" && results[5].summary == "no answer: connection refused")
        web.replicas = 0
        web.available = 0
        let zero = ValidationVerdicts.applications(ApplicationValidationObservations(
            workloads: [.init(kind: .deployment, namespace: "default", name: "web", reading: .read(web))], probes: []))
        #expect(zero.first?.summary == "web is scaled to 0 (Deployment/default/web)")
    }

    @Test func aQueryIsHealthyWhenEverySampleIsBelowItsThreshold() {
        typealias Query = ApplicationValidationObservations.Query
        func judge(_ values: [String], below: Double = 0.9, emptyIsHealthy: Bool = false) -> ValidationResult {
            let samples = values.enumerated().map { Query.Sample(series: "{instance=\"n\($0.offset)\"}", value: $0.element) }
            let results = ValidationVerdicts.applications(ApplicationValidationObservations(workloads: [], probes: [], queries: [
                Query(query: "errors:ratio", below: below, emptyIsHealthy: emptyIsHealthy, answer: .read(samples))]))
            #expect(results.map(\.name) == ["applications/prometheus errors:ratio"])
            return results[0]
        }
        let fine = judge(["0.1", "0.89", "-Inf"])
        #expect(fine.verdict == .healthy && fine.summary == "3 of 3 samples below 0.9" && fine.action == nil)
        // At the threshold is not below it; NaN and a value that is not a number never are.
        let over = judge(["0.1", "0.9", "NaN", "+Inf", "up to date"])
        #expect(over.verdict == .unhealthy && over.summary == "4 of 5 samples not below 0.9")
        #expect(over.evidence == [#"{instance="n1"}: 0.9"#, #"{instance="n2"}: NaN"#, #"{instance="n3"}: +Inf"#, #"{instance="n4"}: up to date"#,
                                  #"{instance="n0"}: 0.1"#], "the samples over the threshold first")
        #expect(judge(["100"], below: 100).summary == "1 of 1 samples not below 100")
        let empty = judge([])
        #expect(empty.verdict == .unhealthy && empty.summary == "the query matched nothing (whenEmpty: unhealthy)"
                && empty.action?.contains("whenEmpty: healthy") == true)
        #expect(judge([], emptyIsHealthy: true).verdict == .healthy)
        let unreadable = ValidationVerdicts.applications(ApplicationValidationObservations(workloads: [], probes: [], queries: [
            Query(query: "up", below: 1, emptyIsHealthy: true, answer: .unreadable("Prometheus at http://p/api/v1/query did not answer"))]))
        #expect(unreadable.first?.verdict == .unknown && unreadable.first?.summary == "cannot ask Prometheus: Prometheus at http://p/api/v1/query did not answer")
    }

    @Test func evidenceIsBounded() {
        let many = (0..<50).map { Node(name: "agent-\($0)", server: false, ready: false, version: Self.version, cordoned: false) }
        let result = Self.cluster(nodes: many)["ready"]
        #expect(result?.evidence.count == ValidationVerdicts.evidenceMax + 1 && result?.evidence.last == "… and 30 more")
    }

    // MARK: - versions (--post-update)

    static func versions(_ meant: [VersionValidationObservations.Meant], running: [String: String]) -> [String: ValidationResult] {
        let results = ValidationVerdicts.versions(VersionValidationObservations(meant: meant, running: .read(running)))
        #expect(results.map(\.name) == ["versions/k3s", "versions/longhorn", "versions/flux"])
        return Dictionary(uniqueKeysWithValues: results.map { ($0.check, $0) })
    }

    @Test func versionsMatchWhatTheLastOperationsMeantOrNameWhatDoesNot() {
        let rollout = VersionValidationObservations.Meant(component: "k3s", operation: "rollout r-1 (completed, to v1.32.4+k3s1)",
                                                          versions: ["server-1": "v1.32.4+k3s1", "agent-1": "v1.32.4+k3s1"])
        let update = VersionValidationObservations.Meant(component: "longhorn", operation: "update u-1 of longhorn (reverted)",
                                                         versions: ["longhorn": "v1.7.2"])
        let running = ["server-1": "v1.32.4+k3s1", "agent-1": "v1.32.4+k3s1", "longhorn": "v1.7.2", "flux": "v2.5.1"]
        let healthy = Self.versions([rollout, update], running: running)
        #expect(healthy.values.allSatisfy { $0.isHealthy }, "\(healthy)")
        #expect(healthy["k3s"]?.summary == "at the version rollout r-1 (completed, to v1.32.4+k3s1) meant")
        #expect(healthy["k3s"]?.evidence == ["agent-1: v1.32.4+k3s1, meant v1.32.4+k3s1", "server-1: v1.32.4+k3s1, meant v1.32.4+k3s1"])
        #expect(healthy["flux"]?.summary == "no rollout or update of flux recorded: nothing to compare")

        var moved = running
        moved["agent-1"] = "v1.31.4+k3s1"
        moved["longhorn"] = nil
        let wrong = Self.versions([rollout, update], running: moved)
        #expect(wrong["k3s"]?.verdict == .unhealthy && wrong["k3s"]?.summary == "not at the version rollout r-1 (completed, to v1.32.4+k3s1) meant: agent-1")
        #expect(wrong["k3s"]?.action?.contains("upkeep plan") == true)
        #expect(wrong["longhorn"]?.verdict == .unhealthy && wrong["longhorn"]?.evidence == ["longhorn: not running, meant v1.7.2"])
    }

    @Test func anOperationThatMeantNoVersionIsUnhealthyAndAnUnreadableHistoryUnknown() {
        let unfinished = VersionValidationObservations.Meant(component: "flux", operation: "update u-2 of flux", versions: [:],
                                                             problem: "is unfinished", action: "`upkeep update flux --to v2.5.1` carries it on")
        let results = Self.versions([unfinished], running: ["flux": "v2.4.0"])
        #expect(results["flux"]?.verdict == .unhealthy && results["flux"]?.summary == "update u-2 of flux is unfinished")
        #expect(results["flux"]?.action == "`upkeep update flux --to v2.5.1` carries it on")
        let unread = ValidationVerdicts.versions(VersionValidationObservations(meant: [], running: .read([:]), history: .unreadable("locked")))
        #expect(unread.allSatisfy { $0.verdict == .unknown && $0.summary == "cannot read the state database: locked" }, "\(unread)")
    }
}
