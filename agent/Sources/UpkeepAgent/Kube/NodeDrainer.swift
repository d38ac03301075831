import UpkeepAgentCore
import UpkeepKube
import UpkeepProtocol

/// Cordons, drains and uncordons one node through the Kubernetes API: the eviction API (so
/// PodDisruptionBudgets hold; a 429 is retried with backoff until the drain's deadline), or a
/// plain delete with `disableEviction`, DaemonSet and mirror pods skipped, one progress event per
/// pod step, evictions bounded to `parallelMax` at a time; a pod is waited for until it is gone,
/// or until `skipWaitForDeleteTimeoutSeconds` past its deletionTimestamp.
public struct NodeDrainer: Sendable {
    public static let parallelMax = 16
    public static let goneCheckIntervalMs: Int64 = 250
    public let client: KubeClient
    public let nodeName: String
    /// Wall-clock seconds since the epoch, against which deletionTimestamps are read.
    public let now: @Sendable () -> Double
    /// Counts the evictions given up at the deadline (`AgentLimit.evictionRetries`).
    public let limits: AgentLimits?

    public init(client: KubeClient, nodeName: String, now: @escaping @Sendable () -> Double, limits: AgentLimits? = nil) {
        self.client = client
        self.nodeName = nodeName
        self.now = now
        self.limits = limits
    }

    /// Whether the node is unschedulable now.
    public func isUnschedulable() async throws -> Bool {
        try await client.get(Node.self, nodeName).unschedulable
    }

    public func setUnschedulable(_ value: Bool) async throws {
        _ = try await client.patch(Node.self, nodeName, ["spec": ["unschedulable": .bool(value)]])
    }

    /// Evicts the node's pods. Throws `AgentFailure(.kubernetes)` naming the pods that block or
    /// did not go within the deadline; the node stays cordoned then.
    public func drain(_ options: DrainOptions, progress: @escaping @Sendable (PodProgress) async -> Void) async throws -> DrainReport {
        let deadline = ContinuousClock.now + .seconds(options.timeoutSeconds)
        let pods = try await client.pods(on: nodeName)
        var evict: [Pod] = []
        var skipped = 0
        var blocked: [String] = []
        for pod in pods {
            switch DrainPlan.decide(pod, options: options) {
            case .evict: evict.append(pod)
            case .skip(let why):
                skipped += 1
                await progress(PodProgress(namespace: pod.namespace ?? "", name: pod.name, action: .skipped, message: why))
            case .block(let why):
                blocked.append("\(pod.namespace ?? "")/\(pod.name) \(why)")
                await progress(PodProgress(namespace: pod.namespace ?? "", name: pod.name, action: .failed, message: why))
            }
        }
        guard blocked.isEmpty else {
            let hint = blocked.contains { $0.hasSuffix(DrainPlan.emptyDirReason) } ? "; \(DrainPlan.emptyDirHint)" : ""
            throw AgentFailure(.kubernetes, "cannot drain \(nodeName): \(blocked.joined(separator: "; "))\(hint); nothing was evicted")
        }
        let failures = await withTaskGroup(of: String?.self) { group in
            var next = 0
            var failures: [String] = []
            func launch() {
                guard next < evict.count else { return }
                let pod = evict[next]
                next += 1
                group.addTask { await evictOne(pod, options: options, deadline: deadline, progress: progress) }
            }
            for _ in 0..<min(Self.parallelMax, evict.count) { launch() }
            for await failure in group {
                if let failure { failures.append(failure) }
                launch()
            }
            return failures
        }
        guard failures.isEmpty else {
            throw AgentFailure(.kubernetes, "drain of \(nodeName) did not finish within \(options.timeoutSeconds) s or was refused: \(failures.sorted().joined(separator: "; "))")
        }
        return DrainReport(evictedPods: evict.count, skippedPods: skipped)
    }

    /// Evicts one pod and waits until it is gone; nil on success, else why not.
    private func evictOne(_ pod: Pod, options: DrainOptions, deadline: ContinuousClock.Instant,
                          progress: @Sendable (PodProgress) async -> Void) async -> String? {
        let namespace = pod.namespace ?? "default"
        let label = "\(namespace)/\(pod.name)"
        func event(_ action: PodAction, _ message: String) async {
            await progress(PodProgress(namespace: namespace, name: pod.name, action: action, message: message))
        }
        var attempt = 0
        while true {
            guard ContinuousClock.now < deadline else {
                if attempt > 0 {
                    limits?.record(.evictionRetries, "gave up evicting \(label) from \(nodeName) after \(attempt) refusals: the drain's "
                                   + "\(options.timeoutSeconds) s passed (a PodDisruptionBudget still forbids it)")
                }
                await event(.failed, "timed out waiting for the eviction to be allowed")
                return "\(label): timed out (a PodDisruptionBudget still forbids its eviction)"
            }
            do {
                let grace = options.gracePeriodSeconds.map(Int64.init)
                if options.disableEviction {
                    // kubectl drain --disable-eviction: a plain DELETE, no budget consulted.
                    try await client.delete(.pods, pod.name, namespace: namespace, gracePeriodSeconds: grace)
                    await event(.evicting, "deleted (eviction disabled: disruption budgets not consulted)")
                } else {
                    try await client.evict(pod: pod.name, namespace: namespace, gracePeriodSeconds: grace)
                    await event(.evicting, "eviction accepted")
                }
                break
            } catch let error as KubeAPIError where error.isTooManyRequests {
                await event(.retrying, error.message)
                let delay = DrainPlan.retryDelayMs(attempt: attempt)
                attempt += 1
                try? await Task.sleep(for: .milliseconds(delay))
            } catch let error as KubeAPIError where error.isNotFound {
                await event(.evicted, "already gone")
                return nil
            } catch {
                await event(.failed, "\(error)")
                return "\(label): \(error)"
            }
        }
        while true {
            do {
                let current = try await client.get(Pod.self, pod.name, namespace: namespace)
                if current.uid != pod.uid { break }
                if DrainPlan.skipsWaiting(deletionTimestamp: current.deletionTimestamp, now: now(), seconds: options.skipWaitForDeleteTimeoutSeconds) {
                    await event(.evicted, "still terminating more than \(options.skipWaitForDeleteTimeoutSeconds ?? 0) s past its deletionTimestamp; "
                                + "not waited for (skipWaitForDeleteTimeout)")
                    return nil
                }
            } catch let error as KubeAPIError where error.isNotFound {
                break
            } catch {
                await event(.failed, "\(error)")
                return "\(label): \(error)"
            }
            guard ContinuousClock.now < deadline else {
                await event(.failed, "evicted but still terminating at the deadline")
                return "\(label): still terminating"
            }
            try? await Task.sleep(for: .milliseconds(Self.goneCheckIntervalMs))
        }
        await event(.evicted, "gone")
        return nil
    }
}

/// Node Ready at the expected kubeletVersion, through the API (the `nodeReady` probe).
public struct KubeNodeReadiness: NodeReadinessChecking {
    public let access: KubeAccess

    public init(access: KubeAccess) { self.access = access }

    public func check(node: String, expectedK3sVersion: String?) async -> (ok: Bool, message: String) {
        do {
            let object = try await access.client().get(Node.self, node)
            guard object.isReady else {
                let reason = object.condition("Ready").map { "\($0.reason) \($0.message)" } ?? "no Ready condition"
                return (false, "node \(node) is not Ready (\(object.readyStatus): \(reason))")
            }
            if let expectedK3sVersion, object.kubeletVersion != expectedK3sVersion {
                return (false, "node \(node) is Ready at kubeletVersion \(object.kubeletVersion), expected \(expectedK3sVersion)")
            }
            return (true, "node \(node) is Ready at \(object.kubeletVersion)")
        } catch {
            return (false, "cannot read node \(node) from the API: \(error)")
        }
    }
}

/// The agent's Kubernetes client, made from its kubeconfig on first use (k3s may write the file
/// after the agent starts).
public actor KubeAccess {
    public let kubeconfigPath: String
    private var cached: KubeClient?

    public init(kubeconfigPath: String) { self.kubeconfigPath = kubeconfigPath }

    public func client() throws(AgentFailure) -> KubeClient {
        if let cached { return cached }
        do {
            let client = try KubeClient(kubeconfig: kubeconfigPath)
            cached = client
            return client
        } catch {
            throw AgentFailure(.kubernetes, "cannot use the kubeconfig \(kubeconfigPath): \(error); set kubeconfig in agent.yaml (agents: see deploy/rbac.yaml)")
        }
    }
}
