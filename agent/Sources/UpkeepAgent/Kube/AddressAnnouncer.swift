import Logging
import UpkeepAgentCore
import UpkeepKube

/// What the agent announces, and how often it tries: a pure schedule, with no I/O.
///
/// The agent writes the address the controller should dial into its own Node's annotation
/// `upkeep.io/agent-address`, with the node's own k3s credentials: a node identity may modify
/// its own Node object under the NodeRestriction admission plugin
/// (https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#noderestriction),
/// so the kubelet kubeconfig `upkeep-agent join` names is enough on agent nodes.
public enum AddressAnnouncement {
    public static let annotation = "upkeep.io/agent-address"
    /// Bound on tries: the API may not answer yet when the node boots (k3s writes its
    /// kubeconfig and starts its API after the agent), so the tries spread over about 2.5 minutes.
    public static let attemptsMax = 10
    public static let delaySecondsMax = 30.0

    /// Seconds to wait after failed attempt `attempt` (1-based) before the next; nil: give up.
    public static func delaySeconds(afterAttempt attempt: Int) -> Double? {
        guard attempt >= 1, attempt < attemptsMax else { return nil }
        return min(Double(1 << min(attempt - 1, 10)), delaySecondsMax)
    }

    /// The host:port the controller should dial: the listen address unless it is a wildcard,
    /// else the node's InternalIP (what the controller dials without an annotation); IPv6 in
    /// brackets. nil when the listener is on a wildcard and the Node has no InternalIP.
    public static func advertised(listenAddress: String, port: Int, internalIP: String?) -> String? {
        let wildcard = ["", "0.0.0.0", "::", "[::]", "*"].contains(listenAddress)
        guard let host = wildcard ? internalIP : listenAddress, !host.isEmpty else { return nil }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return bare.contains(":") ? "[\(bare)]:\(port)" : "\(bare):\(port)"
    }

    /// The merge patch that sets the annotation and nothing else.
    public static func patch(address: String) -> JSON {
        ["metadata": ["annotations": [annotation: .string(address)]]]
    }
}

/// Annotates the agent's own Node with its address, in the background, with bounded retries.
/// Every failed try is logged (at most `attemptsMax` lines per start) and counted in `report`;
/// giving up is logged as an error that says what to do. It never touches another Node and
/// never removes anything.
public actor AddressAnnouncer {
    /// The announcer's counters: tries, failures, the last error, the address once written.
    public struct Report: Codable, Equatable, Sendable {
        /// The address written, once written.
        public var address: String?
        public var attempts = 0
        public var failures = 0
        public var lastError: String?
        /// True once the tries are used up without success.
        public var gaveUp = false
    }

    let access: KubeAccess
    let nodeName: String
    let listenAddress: String
    let logger: Logger
    let sleep: @Sendable (Double) async -> Void
    public private(set) var report = Report()

    public init(access: KubeAccess, nodeName: String, listenAddress: String, logger: Logger,
                sleep: @escaping @Sendable (Double) async -> Void = { seconds in try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000))) }) {
        self.access = access
        self.nodeName = nodeName
        self.listenAddress = listenAddress
        self.logger = logger
        self.sleep = sleep
    }

    /// Tries until the annotation says where the agent listens on `port` (the bound port), the
    /// tries are used up, or the task is cancelled. Returns whether it succeeded.
    @discardableResult
    public func run(port: Int) async -> Bool {
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            report.attempts = attempt
            do {
                let address = try await announce(port: port)
                report.address = address
                logger.notice("announced this agent at \(address) on node \(nodeName) (\(AddressAnnouncement.annotation))")
                return true
            } catch {
                report.failures += 1
                report.lastError = error.message
                guard let delay = AddressAnnouncement.delaySeconds(afterAttempt: attempt) else {
                    report.gaveUp = true
                    logger.error("""
                        could not annotate node \(nodeName) with \(AddressAnnouncement.annotation) after \(attempt) tries: \(error.message); \
                        the controller dials the node's InternalIP at its agentPort instead. Fix the kubeconfig in agent.yaml and restart \
                        upkeep-agent, or annotate the node by hand
                        """)
                    return false
                }
                logger.warning("annotating node \(nodeName) failed (try \(attempt) of \(AddressAnnouncement.attemptsMax), again in \(Int(delay)) s): \(error.message)")
                await sleep(delay)
            }
        }
        return false
    }

    /// One try: reads the Node, and patches it unless the annotation is already right.
    func announce(port: Int) async throws -> String {
        let client = try await access.client()
        let node = try await client.get(Node.self, nodeName)
        guard let address = AddressAnnouncement.advertised(listenAddress: listenAddress, port: port, internalIP: node.internalIP) else {
            throw AgentFailure(.kubernetes, "the agent listens on all addresses and node \(nodeName) has no InternalIP; set listen.address in agent.yaml")
        }
        if node.annotations[AddressAnnouncement.annotation] != address {
            _ = try await client.patch(Node.self, nodeName, AddressAnnouncement.patch(address: address))
        }
        return address
    }
}

/// The daemon's side of the announcement: runs `upkeep-agent announce` as a child (its
/// Kubernetes client's memory leaves with it; docs/decisions/2026-12-07-agent-announces-its-address.md)
/// with a time bound above the announcer's whole schedule, passes what the child printed to
/// `relay`, and counts a child that did not annotate the Node (it gave up after its tries, or
/// its bound stopped it) as `AgentLimit.announcement`. A cancelled run (the daemon stopping)
/// counts nothing.
public enum AnnouncementChild {
    /// The announcer's retry delays plus 30 s for each try.
    public static var boundSeconds: Double {
        let delays = (1..<AddressAnnouncement.attemptsMax).compactMap { AddressAnnouncement.delaySeconds(afterAttempt: $0) }
        return delays.reduce(0, +) + Double(AddressAnnouncement.attemptsMax) * 30
    }

    public static func run(executable: String, arguments: [String], boundSeconds: Double = boundSeconds,
                           limits: AgentLimits, relay: (String) -> Void) async {
        let outcome: ProcessOutcome
        do {
            outcome = try await ProcessRunner.run(executable, arguments, timeoutSeconds: boundSeconds) {
                limits.record(.announcement, "upkeep-agent announce ran \(Int(boundSeconds)) s, its bound, and was stopped; "
                              + "the node is not annotated with \(AddressAnnouncement.annotation)")
            }
        } catch {
            relay("<3>could not run upkeep-agent announce: \(error.message)\n")
            return
        }
        relay(outcome.output + outcome.error)
        if !outcome.succeeded && !Task.isCancelled {
            limits.record(.announcement, "upkeep-agent announce gave up (exit \(outcome.exitCode.map(String.init) ?? "by a signal")): "
                          + "the node is not annotated with \(AddressAnnouncement.annotation); the controller dials its InternalIP")
        }
    }
}
