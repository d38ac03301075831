import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepKube
import UpkeepProtocol
@testable import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepTestSupport

/// The simulated API with the agent tests' helpers: 1 server and 2 agents, no volumes.
typealias SimulatedAPI = SandboxAPI

extension SandboxAPI {
    convenience init() async throws {
        try await self.init(spec: ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1))
    }

    func pods(on node: String) -> [Pod] {
        cluster.withModel { $0.store.list(.pods).map(Pod.init).filter { $0.nodeName == node && !$0.isTerminating } }
    }

    func unschedulable(_ node: String) async throws -> Bool { try await client.get(Node.self, node).unschedulable }

    func setUnschedulable(_ node: String, _ value: Bool) async throws {
        _ = try await client.patch(Node.self, node, ["spec": ["unschedulable": .bool(value)]])
    }

    /// A Deployment whose pods all land on `node`, with a budget of `minAvailable`.
    func deploy(_ name: String, onto node: String, replicas: Int64, minAvailable: Int64, emptyDir: Bool = false) async throws {
        let others = cluster.withModel { $0.spec.nodeNames }.filter { $0 != node }
        for other in others { try await setUnschedulable(other, true) }
        _ = try await client.create(.deployments, Seed.deployment("default", name, replicas: replicas, image: "busybox:1.36", emptyDir: emptyDir))
        _ = try await client.create(.podDisruptionBudgets, ["metadata": ["name": .string(name), "namespace": "default"],
                                                            "spec": ["minAvailable": .int(minAvailable), "selector": ["matchLabels": ["app": .string(name)]]]])
        let running = await waitUntil(seconds: 20) { self.pods(on: node).filter { $0.labels["app"] == name && $0.isReady }.count == Int(replicas) }
        #expect(running, "pods of \(name) did not start on \(node)")
        for other in others { try await setUnschedulable(other, false) }
    }
}

/// Collects progress events from a drain.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [PodProgress] = []
    func append(_ event: PodProgress) { lock.withLock { events.append(event) } }
    var all: [PodProgress] { lock.withLock { events } }
}

@Suite(.serialized) struct DrainTests {
    private func agent(on api: SimulatedAPI, node: String = "agent-1") async throws -> (FakeK3sNode, AgentService) {
        let fake = try FakeK3sNode(liveVersion: v1)
        var config = fake.config(nodeName: node)
        config.kubeconfig = api.kubeconfig
        return (fake, try await startService(on: fake, config: config))
    }

    @Test func drainRetriesABudgetThatClearsLaterAndLeavesDaemonSetPods() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        try await api.deploy("burst", onto: "agent-1", replicas: 2, minAvailable: 1)
        let before = api.pods(on: "agent-1")
        let daemonPods = before.filter(\.isDaemonSetPod).count
        let evictable = before.count - daemonPods
        #expect(evictable >= 2)
        let log = EventLog()
        let outcome = try await service.drain(operationID: "drain-1", options: DrainOptions(timeoutSeconds: 60)) { log.append($0) }
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        #expect(outcome.body == .drain(DrainReport(evictedPods: evictable, skippedPods: daemonPods)))
        let events = log.all
        #expect(events.contains { $0.action == .retrying && $0.message.contains("disruption budget") }, "\(events)")
        let metrics = try String(contentsOfFile: fake.config(nodeName: "agent-1").resolvedMetricsTextfile, encoding: .utf8)
        #expect(metrics.contains("upkeep_agent_limit_reached_total{limit=\"eviction_retries\"} 0\n"), "a retry that succeeds later reaches no bound")
        #expect(events.filter { $0.action == .evicted }.count == evictable)
        #expect(events.filter { $0.action == .skipped }.count == daemonPods)
        #expect(api.pods(on: "agent-1").allSatisfy { $0.isDaemonSetPod })
        #expect(try await api.unschedulable("agent-1"))
        // Uncordon returns the node, as this agent cordoned a schedulable node.
        let uncordon = try await service.uncordon(operationID: "uncordon-1")
        #expect(uncordon.body == .uncordon(UncordonReport(uncordoned: true)))
        #expect(try await api.unschedulable("agent-1") == false)
        await api.close()
        _ = fake
    }

    @Test func drainTimesOutOnABudgetThatNeverClearsAndTheNodeStaysCordoned() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        try await api.deploy("solo", onto: "agent-1", replicas: 1, minAvailable: 1)
        let log = EventLog()
        let outcome = try await service.drain(operationID: "drain-1", options: DrainOptions(timeoutSeconds: 3)) { log.append($0) }
        #expect(outcome.state == .failed && outcome.failure == .kubernetes)
        // The agent leaves the node cordoned; what becomes of it is the controller's to say (it
        // uncordons it as the rollout stops), so the message claims nothing about it.
        #expect(outcome.message.contains("default/solo-") && !outcome.message.contains("cordoned"), "\(outcome.message)")
        #expect(log.all.contains { $0.action == .failed && $0.name.hasPrefix("solo-") })
        let metrics = try String(contentsOfFile: fake.config(nodeName: "agent-1").resolvedMetricsTextfile, encoding: .utf8)
        #expect(metrics.contains("upkeep_agent_limit_reached_total{limit=\"eviction_retries\"} 1\n"), "given up once, for the one pod: \(metrics)")
        #expect(api.pods(on: "agent-1").contains { $0.labels["app"] == "solo" })
        #expect(try await api.unschedulable("agent-1"))
        await api.close()
        _ = fake
    }

    @Test func aPodWithEmptyDirRefusesTheDrainUnlessItsDataMayGo() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        try await api.deploy("scratch", onto: "agent-1", replicas: 1, minAvailable: 0, emptyDir: true)
        let refused = try await service.drain(operationID: "drain-1", options: DrainOptions(timeoutSeconds: 10, deleteEmptyDirData: false)) { _ in }
        #expect(refused.state == .failed && refused.failure == .kubernetes)
        #expect(refused.message.contains("uses emptyDir (its data would be lost); drain them with deleteEmptyDirData") && refused.message.contains("nothing was evicted"),
                "\(refused.message)")
        #expect(api.pods(on: "agent-1").contains { $0.labels["app"] == "scratch" }, "nothing was evicted")
        let drained = try await service.drain(operationID: "drain-2", options: DrainOptions(timeoutSeconds: 20, deleteEmptyDirData: true)) { _ in }
        #expect(drained.state == .succeeded, "\(drained.message)")
        #expect(!api.pods(on: "agent-1").contains { $0.labels["app"] == "scratch" })
        await api.close()
        _ = fake
    }

    @Test func disableEvictionDeletesPodsABudgetWouldKeep() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        try await api.deploy("solo", onto: "agent-1", replicas: 1, minAvailable: 1)
        let log = EventLog()
        let options = DrainOptions(timeoutSeconds: 20, podSelector: try LabelSelector.parse("app=solo"), disableEviction: true)
        let outcome = try await service.drain(operationID: "drain-1", options: options) { log.append($0) }
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        #expect(log.all.contains { $0.action == .evicting && $0.message == "deleted (eviction disabled: disruption budgets not consulted)" })
        #expect(!log.all.contains { $0.action == .retrying }, "no eviction was asked, so no budget refused one")
        // Its Deployment makes a new pod; the one that was there is gone.
        #expect(await api.waitUntil { !api.pods(on: "agent-1").contains { $0.labels["app"] == "solo" } })
        await api.close()
        _ = fake
    }

    @Test func skipWaitForDeleteTimeoutLeavesAPodStuckTerminatingOnADeadKubelet() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        try await api.deploy("stuck", onto: "agent-1", replicas: 1, minAvailable: 0)
        // agent-1's kubelet stops: its pods stay Terminating once deleted, as on a real cluster.
        api.cluster.withModel { model in
            model.virtualKubelets.remove("agent-1")
            model.kubeletStatus(node: "agent-1", ready: false, version: nil, now: model.now)
        }
        let selector = try LabelSelector.parse("app=stuck")
        let waited = try await service.drain(operationID: "drain-1", options: DrainOptions(timeoutSeconds: 3, gracePeriodSeconds: 0, podSelector: selector)) { _ in }
        #expect(waited.state == .failed && waited.message.contains("still terminating"), "\(waited.message)")
        let log = EventLog()
        let skipped = try await service.drain(operationID: "drain-2", options: DrainOptions(timeoutSeconds: 20, gracePeriodSeconds: 0, podSelector: selector,
                                                                                           skipWaitForDeleteTimeoutSeconds: 1)) { log.append($0) }
        #expect(skipped.state == .succeeded, "\(skipped.message)")
        #expect(log.all.contains { $0.action == .evicted && $0.message.contains("not waited for (skipWaitForDeleteTimeout)") }, "\(log.all)")
        #expect(try await api.client.list(Pod.self, labelSelector: selector).contains { $0.isTerminating }, "the pod is still there, terminating")
        await api.close()
        _ = fake
    }

    @Test func skipWaitingFollowsKubectlsRule() {
        #expect(!DrainPlan.skipsWaiting(deletionTimestamp: 100, now: 105, seconds: 5), "exactly at the bound: still waited for")
        #expect(DrainPlan.skipsWaiting(deletionTimestamp: 100, now: 105.5, seconds: 5))
        #expect(!DrainPlan.skipsWaiting(deletionTimestamp: nil, now: 1_000, seconds: 5), "not being deleted")
        #expect(!DrainPlan.skipsWaiting(deletionTimestamp: 100, now: 1_000, seconds: nil), "option off")
    }

    @Test func aNodeCordonedByHandBeforeIsNotUncordoned() async throws {
        let api = try await SimulatedAPI()
        let (fake, service) = try await agent(on: api)
        // Not cordoned by this agent at all: uncordon leaves it.
        try await api.setUnschedulable("agent-1", true)
        let untouched = try await service.uncordon(operationID: "uncordon-0")
        #expect(untouched.body == .uncordon(UncordonReport(uncordoned: false)) && untouched.message.contains("not cordoned by this agent"))
        #expect(try await api.unschedulable("agent-1"))
        // Cordoned by hand, then by the agent: the agent remembers and leaves it cordoned.
        let cordon = try await service.cordon(operationID: "cordon-1")
        #expect(cordon.body == .cordon(CordonReport(wasUnschedulable: true)))
        let again = try await service.cordon(operationID: "cordon-2")
        #expect(again.body == .cordon(CordonReport(wasUnschedulable: true)))
        let uncordon = try await service.uncordon(operationID: "uncordon-1")
        #expect(uncordon.body == .uncordon(UncordonReport(uncordoned: false)) && uncordon.message.contains("before Upkeep cordoned it"))
        #expect(try await api.unschedulable("agent-1"))
        // The memory survives an agent restart: cordon a schedulable node, restart, uncordon.
        try await api.setUnschedulable("agent-1", false)
        _ = try await service.cordon(operationID: "cordon-3")
        #expect(try await api.unschedulable("agent-1"))
        var config = fake.config(nodeName: "agent-1")
        config.kubeconfig = api.kubeconfig
        let restarted = try await restartService(service, on: fake, config: config)
        let back = try await restarted.uncordon(operationID: "uncordon-2")
        #expect(back.body == .uncordon(UncordonReport(uncordoned: true)))
        #expect(try await api.unschedulable("agent-1") == false)
        await api.close()
    }

    @Test func nodeReadyProbeChecksTheKubeletVersion() async throws {
        let api = try await SimulatedAPI()
        let readiness = KubeNodeReadiness(access: KubeAccess(kubeconfigPath: api.kubeconfig))
        let ready = await readiness.check(node: "agent-1", expectedK3sVersion: "v1.30.6+k3s1")
        #expect(ready.ok, "\(ready.message)")
        let wrong = await readiness.check(node: "agent-1", expectedK3sVersion: "v1.31.2+k3s1")
        #expect(!wrong.ok && wrong.message.contains("expected v1.31.2+k3s1"))
        let missing = await readiness.check(node: "nope", expectedK3sVersion: nil)
        #expect(!missing.ok)
        let noConfig = await KubeNodeReadiness(access: KubeAccess(kubeconfigPath: "/nonexistent/kubeconfig")).check(node: "agent-1", expectedK3sVersion: nil)
        #expect(!noConfig.ok && noConfig.message.contains("kubeconfig"))
        await api.close()
    }
}

/// Decisions per pod, without an API.
@Suite struct DrainPlanTests {
    private func pod(_ labels: [String: String] = ["app": "web"], owner: String? = "ReplicaSet", emptyDir: Bool = false,
                     mirror: Bool = false, phase: String = "Running") -> Pod {
        var metadata: JSON = ["name": "p", "namespace": "default", "labels": .object(labels.mapValues { .string($0) })]
        if let owner { metadata["ownerReferences"] = [["apiVersion": "apps/v1", "kind": .string(owner), "name": "o", "uid": "u", "controller": true]] }
        if mirror { metadata["annotations"] = ["kubernetes.io/config.mirror": "x"] }
        let volumes: JSON = emptyDir ? [["name": "scratch", "emptyDir": [:]]] : []
        return Pod(json: ["metadata": metadata, "spec": ["nodeName": "n", "volumes": volumes], "status": ["phase": .string(phase)]])
    }

    @Test func decisions() throws {
        let options = DrainOptions(timeoutSeconds: 10, deleteEmptyDirData: false, podSelector: try LabelSelector.parse("app=web"))
        #expect(DrainPlan.decide(pod(), options: options) == .evict)
        #expect(DrainPlan.decide(pod(owner: "DaemonSet"), options: options) == .skip("DaemonSet pod"))
        #expect(DrainPlan.decide(pod(mirror: true), options: options) == .skip("mirror pod (static, managed by the kubelet)"))
        #expect(DrainPlan.decide(pod(["app": "db"]), options: options) == .skip("not selected by app=web"))
        guard case .block(let why) = DrainPlan.decide(pod(emptyDir: true), options: options) else { Issue.record("emptyDir not blocked"); return }
        #expect(why == DrainPlan.emptyDirReason && DrainPlan.emptyDirHint.contains("deleteEmptyDirData"), "the drain names the setting once, after the pods")
        #expect(DrainPlan.decide(pod(emptyDir: true), options: DrainOptions(timeoutSeconds: 10)) == .evict)
        guard case .block = DrainPlan.decide(pod(owner: nil), options: options) else { Issue.record("bare pod not blocked"); return }
        #expect(DrainPlan.decide(pod(owner: nil, phase: "Succeeded"), options: options) == .evict)
        #expect((0..<6).map(DrainPlan.retryDelayMs) == [1_000, 2_000, 4_000, 5_000, 5_000, 5_000])
    }
}
