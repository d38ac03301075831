import UpkeepCore
import UpkeepProtocol

/// Asks agents to connect to their peers (`reachPeers`, PROTOCOL.md): each agent once, at most
/// `agentsAtOnce` at a time, each request bounded by a deadline that covers its connects. Never
/// throws: each node gets an answer, an agent that cannot be asked a reason.
public enum PeerReachability {
    /// Agents asked at once.
    public static let agentsAtOnce = 16
    /// Added to a request's deadline for the connection to the agent and its answer.
    public static let deadlineMarginSeconds = 10

    public enum Answer: Equatable, Sendable {
        case answered([ReachPeerResult])
        /// The agent answered `notImplemented`: it is older than `reachPeers`.
        case agentTooOld(String)
        case failed(String)
    }

    /// The deadline of one request for `peers` peers: the agent's rounds of connects
    /// (`ReachPeersRequest.connectsAtOnceMax` at once, each bounded by `timeoutSeconds`) and a margin.
    public static func deadlineSeconds(peers: Int, timeoutSeconds: Int) -> Int {
        (peers + ReachPeersRequest.connectsAtOnceMax - 1) / ReachPeersRequest.connectsAtOnceMax * timeoutSeconds + deadlineMarginSeconds
    }

    /// Each node's agent asked to connect to its peers; nodes with no peers are not asked.
    public static func ask(_ fleet: AgentFleet, peers: [String: [ReachPeer]], timeoutSeconds: Int) async -> [String: Answer] {
        let jobs = peers.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }
        let answers = await BoundedTasks.map(jobs, atOnce: agentsAtOnce) { node, list in
            (node, await ask(fleet, node: node, peers: list, timeoutSeconds: timeoutSeconds))
        }
        return Dictionary(answers, uniquingKeysWith: { first, _ in first })
    }

    static func ask(_ fleet: AgentFleet, node: String, peers: [ReachPeer], timeoutSeconds: Int) async -> Answer {
        let call = NodeCall(node: node, fleet: fleet, backoff: Backoff(initialDelay: .milliseconds(200), maximumDelay: .seconds(1), attemptsMax: 2),
                            deadline: .now + .seconds(deadlineSeconds(peers: peers.count, timeoutSeconds: timeoutSeconds)), progress: { _ in })
        do {
            return .answered(try await call.result(ReachPeersRequest(peers: peers, timeoutSeconds: timeoutSeconds)).peers)
        } catch let refusal as ErrorResponse where refusal.code == .notImplemented {
            return .agentTooOld("its agent answered \(refusal.code.rawValue) (\(refusal.message)): it is older than the reachPeers request")
        } catch let refusal as ErrorResponse {
            return .failed("its agent answered \(refusal.code.rawValue): \(refusal.message)")
        } catch let error as AgentTransportError {
            return .failed("no answer from its agent: \(error.reason)")
        } catch {
            return .failed("\(error)")
        }
    }
}
