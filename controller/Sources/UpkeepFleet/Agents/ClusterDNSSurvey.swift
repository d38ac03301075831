import UpkeepCore
import UpkeepProtocol
import UpkeepRollout

/// Asks every node's agent to resolve one name through the cluster DNS address it is configured
/// with (`clusterDNS`, PROTOCOL.md): at most `concurrencyMax` agents at once, each request
/// bounded by `dnsTimeoutSeconds` at the agent and by a deadline here (connection included).
/// Never throws: each node gets what its agent said, or why its agent could not be asked.
public struct ClusterDNSSurvey: Sendable {
    public let fleet: AgentFleet
    /// The agent's bound on the DNS answer (the request's `timeoutSeconds`, 1…30).
    public var dnsTimeoutSeconds: Int
    /// Agents asked at once.
    public var concurrencyMax: Int

    public init(fleet: AgentFleet, dnsTimeoutSeconds: Int = 3, concurrencyMax: Int = 16) {
        self.fleet = fleet
        self.dnsTimeoutSeconds = min(30, max(1, dnsTimeoutSeconds))
        self.concurrencyMax = max(1, concurrencyMax)
    }

    /// Each of `nodes` asked for `name`, in the order given.
    public func ask(_ nodes: [String], name: String) async -> [DNSFromNodesObservations.Node] {
        await BoundedTasks.map(nodes, atOnce: concurrencyMax) { node in await self.ask(node, name: name) }
    }

    private func ask(_ node: String, name: String) async -> DNSFromNodesObservations.Node {
        let deadline = ContinuousClock.now + .seconds(dnsTimeoutSeconds + fleet.configuration.connectTimeoutSeconds)
        let call = NodeCall(node: node, fleet: fleet, backoff: Backoff(initialDelay: .milliseconds(200), maximumDelay: .seconds(1), attemptsMax: 2),
                            deadline: deadline, progress: { _ in })
        do {
            let result = try await call.result(ClusterDNSRequest(name: name, timeoutSeconds: dnsTimeoutSeconds))
            return DNSFromNodesObservations.Node(name: node, server: result.server,
                                                 answer: result.answered ? .answered(code: result.code, addresses: result.addresses) : .noAnswer(result.message))
        } catch let refusal as ErrorResponse {
            return DNSFromNodesObservations.Node(name: node, answer: .agentUnreachable("it answered \(refusal.code.rawValue): \(refusal.message)"))
        } catch let error as AgentTransportError {
            return DNSFromNodesObservations.Node(name: node, answer: .agentUnreachable(error.reason))
        } catch {
            return DNSFromNodesObservations.Node(name: node, answer: .agentUnreachable("\(error)"))
        }
    }
}
