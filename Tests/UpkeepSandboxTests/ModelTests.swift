import Testing
import UpkeepHTTPServer
import UpkeepKube
@testable import UpkeepSandbox

/// The behaviour model on a clock the test drives: no sockets, no sleeping.
struct ModelTests {
    static let start = 1_800_000_000.0

    /// A booted model: every kubelet reported ready at the spec's version, pods started.
    static func booted(_ spec: ClusterSpec = ClusterSpec(servers: 1, agents: 2, volumes: 3, replicas: 2),
                       timings: ModelTimings = ModelTimings()) -> ClusterModel
    {
        var model = ClusterModel(spec: spec, timings: timings, now: start)
        model.kubeletStatuses(nodes: spec.nodeNames, ready: true, version: spec.k3sVersion, now: start)
        tick(&model, seconds: timings.podStartSeconds + 1)
        return model
    }

    /// Advances in one-second steps, every live kubelet heartbeating, except `silent` nodes.
    static func tick(_ model: inout ClusterModel, seconds: Double, silent: Set<String> = []) {
        var elapsed = 0.0
        while elapsed < seconds {
            elapsed += 1
            let now = model.now + 1
            for node in model.spec.nodeNames where !silent.contains(node) && model.runtimes[node]?.kubeletReady == true {
                model.kubeletHeartbeat(node: node, now: now)
            }
            model.advance(to: now)
        }
    }

    static func node(_ model: ClusterModel, _ name: String) -> Node { Node(json: model.store.get(.nodes, nil, name)!) }

    static func volumes(_ model: ClusterModel) -> [LonghornVolume] { model.store.list(.longhornVolumes).map(LonghornVolume.init) }

    static func instanceManagerPod(_ model: ClusterModel, _ node: String) -> String { ClusterModel.instanceManagerName(node) }

    static func cordon(_ model: inout ClusterModel, _ node: String) {
        let response = model.handle(APIRequest(method: "PATCH", uri: "/api/v1/nodes/\(node)", contentType: "application/strategic-merge-patch+json",
                                               body: Array(#"{"spec":{"unschedulable":true}}"#.utf8)), now: model.now)
        #expect(response.status == 200)
    }

    @Test func bootedClusterIsReadyWithHealthyAttachedVolumes() throws {
        let model = Self.booted()
        #expect(model.summary()["ready"] == true)
        #expect(Self.volumes(model).filter { $0.state == "attached" }.allSatisfy { $0.robustness == "healthy" })
        #expect(Self.volumes(model).filter { $0.state == "detached" }.allSatisfy { $0.robustness == "unknown" })
        #expect(!Self.volumes(model).filter { $0.state == "detached" }.isEmpty)
    }

    @Test func aStoppedK3sMakesItsNodeNotReadyAfterTheGracePeriod() throws {
        var model = Self.booted(timings: ModelTimings(nodeGraceSeconds: 20))
        Self.tick(&model, seconds: 15, silent: ["agent-1"])
        #expect(Self.node(model, "agent-1").isReady, "still within the grace period")
        Self.tick(&model, seconds: 10, silent: ["agent-1"])
        let node = Self.node(model, "agent-1")
        #expect(node.readyStatus == "Unknown")
        #expect(node.condition("Ready")?.reason == "NodeStatusUnknown")
        #expect(node.taints.contains { $0["key"]?.string == "node.kubernetes.io/unreachable" })
        #expect(Self.node(model, "agent-2").isReady)
        // Its replicas stopped: the attached volumes they belong to are degraded.
        let affected = model.store.list(.longhornReplicas).map(LonghornReplica.init).filter { $0.nodeID == "agent-1" }.map(\.volumeName)
        let degraded = Self.volumes(model).filter { affected.contains($0.name) && $0.state == "attached" }
        #expect(!degraded.isEmpty && degraded.allSatisfy { $0.robustness == "degraded" })
        // It comes back when its kubelet reports again.
        model.kubeletStatus(node: "agent-1", ready: true, version: "v1.30.6+k3s1", now: model.now + 1)
        #expect(Self.node(model, "agent-1").isReady)
    }

    @Test func aNodeHoldingTheLastHealthyReplicaCannotBeDrained() throws {
        var model = Self.booted()
        // Stop agent-1's k3s: its replicas fail, so the other copy of each of its volumes is the last one.
        Self.tick(&model, seconds: 25, silent: ["agent-1"])
        let replicas = model.store.list(.longhornReplicas).map(LonghornReplica.init)
        let attachedVolumes = Set(Self.volumes(model).filter { $0.state == "attached" }.map(\.name))
        let lastHolders = Set(replicas.filter { attachedVolumes.contains($0.volumeName) && $0.nodeID != "agent-1" }
            .filter { r in replicas.contains { $0.volumeName == r.volumeName && $0.nodeID == "agent-1" } }.map(\.nodeID))
        let holder = try #require(lastHolders.sorted().first)
        #expect(model.longhornBlocksDrain(of: holder))
        Self.cordon(&model, holder)
        let eviction = model.evict(namespace: "longhorn-system", name: ClusterModel.instanceManagerName(holder), graceSeconds: nil)
        guard case .failure(let error) = eviction else {
            Issue.record("eviction of the instance manager holding the last replica was allowed")
            return
        }
        #expect(error.code == 429)
        #expect(error.causes.first?.reason == "DisruptionBudget")
        // With the policy relaxed, the same eviction goes through.
        model.store.modify(.longhornSettings, "longhorn-system", "node-drain-policy") { $0["value"] = "always-allow" }
        model.advance(to: model.now + 1)
        if case .failure(let error) = model.evict(namespace: "longhorn-system", name: ClusterModel.instanceManagerName(holder), graceSeconds: nil) {
            Issue.record("eviction refused under always-allow: \(error)")
        }
    }

    @Test func aReturningNodesReplicasRebuildAndTheVolumeBecomesHealthy() throws {
        var model = Self.booted(timings: ModelTimings(rebuildSeconds: 30))
        Self.tick(&model, seconds: 25, silent: ["agent-1"])
        let degraded = Self.volumes(model).filter { $0.robustness == "degraded" }.map(\.name)
        #expect(!degraded.isEmpty)
        model.kubeletStatus(node: "agent-1", ready: true, version: "v1.30.6+k3s1", now: model.now + 1)
        Self.tick(&model, seconds: 5)
        let rebuilding = model.store.list(.longhornReplicas).map(LonghornReplica.init).filter { $0.nodeID == "agent-1" && degraded.contains($0.volumeName) }
        #expect(rebuilding.allSatisfy { $0.currentState == "running" && !$0.isHealthy }, "rebuilding, not yet healthy")
        #expect(Self.volumes(model).filter { degraded.contains($0.name) }.allSatisfy { $0.robustness == "degraded" })
        Self.tick(&model, seconds: 30)
        #expect(Self.volumes(model).filter { degraded.contains($0.name) }.allSatisfy { $0.robustness == "healthy" })
        #expect(model.events.contains { $0.kind == "ReplicaRebuilt" })
    }

    /// The `slow-rebuild` fault: replicas on one node rebuild for longer than the model's default.
    @Test func aSlowRebuildFaultHoldsThatNodesReplicasBackLonger() throws {
        var model = Self.booted(timings: ModelTimings(rebuildSeconds: 10))
        model.rebuildSecondsByNode["agent-1"] = 60
        Self.tick(&model, seconds: 25, silent: ["agent-1"])
        let degraded = Self.volumes(model).filter { $0.robustness == "degraded" }.map(\.name)
        #expect(!degraded.isEmpty)
        model.kubeletStatus(node: "agent-1", ready: true, version: "v1.30.6+k3s1", now: model.now + 1)
        Self.tick(&model, seconds: 30)
        #expect(Self.volumes(model).filter { degraded.contains($0.name) }.allSatisfy { $0.robustness == "degraded" },
                "past the default 10 s, still rebuilding")
        Self.tick(&model, seconds: 40)
        #expect(Self.volumes(model).filter { degraded.contains($0.name) }.allSatisfy { $0.robustness == "healthy" })
    }

    @Test func evictedDeploymentPodsMoveButDaemonSetPodsStay() throws {
        var model = Self.booted()
        Self.cordon(&model, "agent-1")
        let pods = model.store.list(.pods).map(Pod.init).filter { $0.nodeName == "agent-1" }
        let movable = pods.filter { $0.controller?.kind == "ReplicaSet" }
        #expect(!movable.isEmpty)
        for pod in movable {
            if case .failure(let error) = model.evict(namespace: pod.namespace!, name: pod.name, graceSeconds: nil) {
                Issue.record("eviction of \(pod.name) refused: \(error)")
            }
        }
        Self.tick(&model, seconds: 5)
        let after = model.store.list(.pods).map(Pod.init)
        #expect(!after.contains { $0.nodeName == "agent-1" && $0.controller?.kind == "ReplicaSet" })
        #expect(after.filter { $0.nodeName == "agent-1" && $0.isDaemonSetPod }.count == pods.filter(\.isDaemonSetPod).count)
        for deployment in model.store.list(.deployments).map(Deployment.init) {
            #expect(deployment.readyReplicas == deployment.replicas, "\(deployment.name)")
        }
    }

    /// OrderedReady, as Kubernetes documents it: `db-1` only once `db-0` is Ready, an evicted pod
    /// back under its own name, scale-down from the highest ordinal.
    @Test func aStatefulSetStartsItsPodsInOrderAndKeepsTheirNames() throws {
        var model = Self.booted(ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1))
        let manifest = #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"default"},"spec":{"replicas":3,"#
            + #""serviceName":"db","selector":{"matchLabels":{"app":"db"}},"template":{"metadata":{"labels":{"app":"db"}},"#
            + #""spec":{"containers":[{"name":"db","image":"postgres:16"}]}}}}"#
        let created = model.handle(APIRequest(method: "POST", uri: "/apis/apps/v1/namespaces/default/statefulsets", contentType: "application/json",
                                              body: Array(manifest.utf8)), now: model.now)
        try #require(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
        let names = { (model: ClusterModel) in
            model.store.list(.pods, namespace: "default").map(Pod.init).filter { $0.labels["app"] == "db" && !$0.isTerminating }.map(\.name).sorted()
        }
        Self.tick(&model, seconds: 1)
        #expect(names(model) == ["db-0"], "db-1 before db-0 is Ready")
        Self.tick(&model, seconds: 3 * (model.timings.podStartSeconds + 2))
        #expect(names(model) == ["db-0", "db-1", "db-2"])
        let set = StatefulSet(json: try #require(model.store.get(.statefulSets, "default", "db")))
        #expect(set.readyReplicas == 3 && set.updatedReplicas == 3 && set.revisionsAgree)

        let evicted = try #require(model.store.get(.pods, "default", "db-1").map(Pod.init))
        guard case .success = model.evict(namespace: "default", name: "db-1", graceSeconds: nil) else {
            Issue.record("eviction of db-1 refused")
            return
        }
        Self.tick(&model, seconds: model.timings.podTerminationSeconds + 2)
        let back = try #require(model.store.get(.pods, "default", "db-1").map(Pod.init), "db-1 did not come back")
        #expect(back.uid != evicted.uid)

        let scaled = model.handle(APIRequest(method: "PATCH", uri: "/apis/apps/v1/namespaces/default/statefulsets/db",
                                             contentType: "application/merge-patch+json", body: Array(#"{"spec":{"replicas":1}}"#.utf8)), now: model.now)
        try #require(scaled.status == 200)
        Self.tick(&model, seconds: 1)
        #expect(names(model) == ["db-0", "db-1"], "db-2 goes first")
        Self.tick(&model, seconds: 2 * (model.timings.podTerminationSeconds + 2))
        #expect(names(model) == ["db-0"])
    }

    @Test func anEvictedPodGoesOnlyOnceItsWholeGracePeriodHasPassed() throws {
        var model = Self.booted()
        // Mid-second, so the grace period ends after the whole second its deletionTimestamp shows.
        model.advance(to: model.now + 0.9)
        let pod = try #require(model.store.list(.pods).map(Pod.init).first { $0.nodeName == "agent-1" && $0.controller?.kind == "ReplicaSet" })
        guard case .success = model.evict(namespace: pod.namespace!, name: pod.name, graceSeconds: nil) else {
            Issue.record("eviction of \(pod.name) refused")
            return
        }
        let stillThere = { (model: ClusterModel) in model.store.get(.pods, pod.namespace, pod.name).map(Pod.init)?.uid == pod.uid }
        model.advance(to: model.now + model.timings.podTerminationSeconds * 0.6)
        #expect(stillThere(model), "gone before its grace period of \(model.timings.podTerminationSeconds) s ended")
        model.advance(to: model.now + model.timings.podTerminationSeconds * 0.5)
        #expect(!stillThere(model), "still there after its grace period ended")
    }

    @Test func aBudgetRefusesEvictionBelowMinAvailableUntilTheReplacementIsReady() throws {
        var model = Self.booted(ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1))
        let web = model.store.list(.pods).map(Pod.init).filter { $0.labels["app"] == "web" }
        #expect(web.count == 2)
        guard case .success = model.evict(namespace: "default", name: web[0].name, graceSeconds: nil) else {
            Issue.record("first eviction refused")
            return
        }
        guard case .failure(let refused) = model.evict(namespace: "default", name: web[1].name, graceSeconds: nil) else {
            Issue.record("second eviction allowed below minAvailable")
            return
        }
        #expect(refused.code == 429 && refused.status["reason"] == "TooManyRequests")
        Self.tick(&model, seconds: model.timings.podStartSeconds + 2)
        guard case .success = model.evict(namespace: "default", name: web[1].name, graceSeconds: nil) else {
            Issue.record("eviction still refused after the replacement became ready")
            return
        }
    }

    @Test func snapshotsBecomeReadyOnlyForAttachedVolumes() throws {
        var model = Self.booted()
        let volumes = Self.volumes(model)
        let attached = try #require(volumes.first { $0.state == "attached" })
        let detached = try #require(volumes.first { $0.state == "detached" })
        for (name, volume) in [("snap-a", attached.name), ("snap-d", detached.name)] {
            let response = model.handle(APIRequest(method: "POST", uri: "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/snapshots",
                                                   contentType: "application/json",
                                                   body: LonghornSnapshot(name: name, volume: volume).json.serialized()), now: model.now)
            #expect(response.status == 201)
        }
        Self.tick(&model, seconds: 3)
        #expect(LonghornSnapshot(json: model.store.get(.longhornSnapshots, "longhorn-system", "snap-a")!).readyToUse)
        #expect(!LonghornSnapshot(json: model.store.get(.longhornSnapshots, "longhorn-system", "snap-d")!).readyToUse)
    }

    @Test func fluxFaultsHoldObjectsNotReadyAndSuspendIsRecorded() throws {
        var model = Self.booted()
        #expect(model.store.list(.fluxKustomizations).map(FluxKustomization.init).allSatisfy { $0.isReady })
        model.fluxFaults["kustomization/flux-system/apps"] = FluxFault(reason: "BuildFailed", message: "kustomize build failed")
        model.advance(to: model.now + 1)
        let apps = FluxKustomization(json: model.store.get(.fluxKustomizations, "flux-system", "apps")!)
        #expect(!apps.isReady && apps.condition("Ready")?.reason == "BuildFailed")
        for suspend in [true, false] {
            let response = model.handle(APIRequest(method: "PATCH", uri: "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/flux-system",
                                                   contentType: "application/merge-patch+json",
                                                   body: Array(#"{"spec":{"suspend":\#(suspend)}}"#.utf8)), now: model.now + 1)
            #expect(response.status == 200)
        }
        #expect(model.events.filter { $0.object == "kustomization/flux-system/flux-system" }.map(\.kind) == ["FluxSuspended", "FluxResumed"])
    }

    /// Flux's controllers skip a suspended object (https://fluxcd.io/flux/components/kustomize/kustomizations/#suspend):
    /// a commit waits at each suspended step (fetch, apply, install) and goes on when it is resumed.
    @Test func aCommitWaitsAtEverySuspendedFluxObjectUntilItIsResumed() throws {
        var model = Self.booted()
        func suspend(_ path: String, _ suspended: Bool) {
            let response = model.handle(APIRequest(method: "PATCH", uri: path, contentType: "application/merge-patch+json",
                                                   body: Array(#"{"spec":{"suspend":\#(suspended)}}"#.utf8)), now: model.now + 1)
            #expect(response.status == 200)
        }
        let source = "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system"
        let kustomization = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/flux-system"
        let release = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/longhorn-system/helmreleases/longhorn"
        func pinned() -> String? { model.store.get(.fluxHelmReleases, "longhorn-system", "longhorn")?[path: "spec", "chart", "spec", "version"]?.string }
        let installed = model.longhornVersion

        // The Kustomization suspended: fetched, not applied.
        suspend(kustomization, true)
        model.applyGitCommit(sha: "a1", longhornChartVersion: "1.8.2", flux: nil)
        #expect(model.gitRevision == "main@sha1:a1")
        #expect(pinned() != "1.8.2" && model.longhornVersion == installed)
        suspend(kustomization, false)
        #expect(pinned() == "1.8.2" && model.longhornVersion == "v1.8.2")

        // The HelmRelease suspended: its chart pinned, not installed.
        suspend(release, true)
        model.applyGitCommit(sha: "b2", longhornChartVersion: "1.9.0", flux: nil)
        #expect(pinned() == "1.9.0" && model.longhornVersion == "v1.8.2")
        Self.tick(&model, seconds: 5)
        #expect(model.longhornVersion == "v1.8.2")
        suspend(release, false)
        #expect(model.longhornVersion == "v1.9.0")

        // The GitRepository suspended: not even fetched.
        suspend(source, true)
        model.applyGitCommit(sha: "c3", longhornChartVersion: "1.10.0", flux: nil)
        #expect(model.gitRevision == "main@sha1:b2" && pinned() == "1.9.0")
        suspend(source, false)
        #expect(model.gitRevision == "main@sha1:c3" && model.longhornVersion == "v1.10.0")
    }

    /// Longhorn blocks a downgrade (https://longhorn.io/docs/1.12.2/deploy/upgrade/): a chart older
    /// than the running manager fails the HelmRelease and changes nothing; `fails-after-manager`
    /// moves the manager and still fails the release.
    @Test func anOlderChartIsBlockedAndAFailureAfterTheManagerLeavesItMoved() throws {
        var model = Self.booted()
        func release() -> FluxHelmRelease { FluxHelmRelease(json: model.store.get(.fluxHelmReleases, "longhorn-system", "longhorn")!) }
        model.longhornFaults.failsAfterManager = true
        model.applyGitCommit(sha: "a1", longhornChartVersion: "1.8.2", flux: nil)
        Self.tick(&model, seconds: 1)
        #expect(model.longhornVersion == "v1.8.2" && model.longhornSetting("default-engine-image") == "longhornio/longhorn-engine:v1.8.2")
        #expect(!release().isReady && release().condition("Ready")?.reason == "UpgradeFailed")
        model.longhornFaults = LonghornFaults()
        model.applyGitCommit(sha: "b2", longhornChartVersion: "1.7.2", flux: nil)
        Self.tick(&model, seconds: 1)
        #expect(model.longhornVersion == "v1.8.2", "the downgrade changed nothing")
        #expect(release().condition("Ready")?.message.contains("downgrade is not supported") == true)
        model.applyGitCommit(sha: "c3", longhornChartVersion: "1.8.3", flux: nil)
        Self.tick(&model, seconds: 1)
        #expect(model.longhornVersion == "v1.8.3" && release().isReady, "a later chart installs and clears the failure")
    }

    /// Engines move when `spec.image` changes (live, once healthy, for an attached volume) or, with
    /// the automatic limit above 0, when Longhorn sets it itself, at most that many per node.
    @Test func enginesMoveBySpecImageOrByTheAutomaticLimit() throws {
        var model = Self.booted(ClusterSpec(servers: 1, agents: 0, volumes: 2, replicas: 1))
        model.applyGitCommit(sha: "a1", longhornChartVersion: "1.8.2", flux: nil)
        Self.tick(&model, seconds: 2)
        let engine = "longhornio/longhorn-engine:v1.8.2"
        #expect(Self.volumes(model).allSatisfy { $0.currentImage == "longhornio/longhorn-engine:v1.7.2" }, "nothing moves at limit 0")
        let first = try #require(Self.volumes(model).first { $0.state == "attached" }).name
        let patched = model.handle(APIRequest(method: "PATCH", uri: "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/\(first)",
                                              contentType: "application/merge-patch+json", body: Array(#"{"spec":{"image":"\#(engine)"}}"#.utf8)),
                                   now: model.now)
        #expect(patched.status == 200)
        Self.tick(&model, seconds: 2)
        #expect(Self.volumes(model).first { $0.name == first }?.currentImage == engine)
        #expect(Self.volumes(model).filter { $0.name != first }.allSatisfy { $0.currentImage != engine })
        model.store.modify(.longhornSettings, "longhorn-system", "concurrent-automatic-engine-upgrade-per-node-limit") { $0["value"] = "1" }
        model.advance(to: model.now + 1)
        let upgrading = Self.volumes(model).filter { $0.state == "attached" && $0.image != $0.currentImage }
        #expect(upgrading.count <= 1, "at most one per node at once")
        Self.tick(&model, seconds: 4)
        #expect(Self.volumes(model).allSatisfy { $0.currentImage == engine && $0.image == engine })
    }

    /// `api stall-writes`: writes of the resource stall, reads and other resources do not.
    @Test func writeStallsApplyToWritesOfTheirResourceOnly() {
        var model = Self.booted()
        model.apiWriteStallSeconds = ["helmreleases": 30]
        let release = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/longhorn-system/helmreleases/longhorn"
        #expect(model.writeStallSeconds(APIRequest(method: "PATCH", uri: release, contentType: "application/merge-patch+json", body: [])) == 30)
        #expect(model.writeStallSeconds(APIRequest(method: "GET", uri: release)) == nil)
        #expect(model.writeStallSeconds(APIRequest(method: "PATCH", uri: "/api/v1/namespaces/kube-system/configmaps/x",
                                                  contentType: "application/merge-patch+json", body: [])) == nil)
        #expect(model.writeStallSeconds(APIRequest(method: "POST", uri: "/apis/helm.toolkit.fluxcd.io/v2/namespaces/default/helmreleases",
                                                  contentType: "application/json", body: [])) == 30)
    }

    @Test func theModelIsDeterministic() throws {
        func run() -> JSON {
            var model = Self.booted()
            Self.tick(&model, seconds: 30, silent: ["agent-2"])
            return .array(model.store.list(.pods) + model.store.list(.longhornReplicas) + model.store.list(.nodes))
        }
        #expect(run() == run())
    }
}
