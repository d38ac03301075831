import NIOCore
import NIOPosix
import UpkeepCore
import UpkeepRollout
import UpkeepProtocol
import UpkeepTLS

/// The controller's connections to its agents: one reconnecting mutual-TLS connection per node,
/// made when first needed, dialled at the address the inventory gave for that node, and kept
/// for the fleet's life: a command makes one fleet (`upkeep apply`: its cross-check, rollout
/// and validation; `upkeep validate`: every area that asks the agents), `upkeep serve` one for
/// as long as it runs. A lost connection is dialled again on the next request, with backoff
/// while dials fail (`ReconnectingClient`).
///
/// It never talks to a node it has no address for, and never accepts a certificate other than
/// that node's agent certificate.
public actor AgentFleet {
    public struct Configuration: Sendable {
        /// Bound on the TCP connect, and again on TLS plus Hello.
        public var connectTimeoutSeconds: Int
        /// Resends of one request after a lost connection or a `busy` answer, within its deadline.
        public var backoff: Backoff
        /// Reported in Hello, for the agents' logs.
        public var software: String
        /// Agents inspected at once that need a dial (a TLS handshake: CPU-bound on both ends).
        public var inspectConcurrencyMax: Int
        /// Agents inspected at once on a connection open already (a Ping each).
        public var warmInspectConcurrencyMax: Int
        /// Each open connection sends a Ping this often, so the agent never closes it as idle
        /// (its idle timeout is 120 s, PROTOCOL.md 11).
        public var keepAliveSeconds: Int

        public init(connectTimeoutSeconds: Int = 10, backoff: Backoff = Backoff(initialDelay: .milliseconds(200), maximumDelay: .seconds(5), attemptsMax: 8),
                    software: String = "upkeep", inspectConcurrencyMax: Int = 64, warmInspectConcurrencyMax: Int = 1024, keepAliveSeconds: Int = 50) {
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.backoff = backoff
            self.software = software
            self.inspectConcurrencyMax = max(1, inspectConcurrencyMax)
            self.warmInspectConcurrencyMax = max(1, warmInspectConcurrencyMax)
            self.keepAliveSeconds = max(1, keepAliveSeconds)
        }

        var client: ClientConfiguration {
            var configuration = ClientConfiguration()
            configuration.software = software
            configuration.connectTimeout = .seconds(connectTimeoutSeconds)
            return configuration
        }
    }

    public nonisolated let security: FleetSecurity
    public nonisolated let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private var endpoints: [String: AgentEndpoint]
    private var clients: [String: (AgentEndpoint, ReconnectingClient)] = [:]

    public init(security: FleetSecurity, endpoints: [String: AgentEndpoint] = [:], configuration: Configuration = Configuration(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.security = security
        self.configuration = configuration
        self.endpoints = endpoints
        self.eventLoopGroup = eventLoopGroup
    }

    /// Replaces the address book (from a fresh inventory reading). Connections to nodes whose
    /// address changed or that are gone are closed.
    public func setEndpoints(_ endpoints: [String: AgentEndpoint]) async {
        self.endpoints = endpoints
        for (node, (endpoint, client)) in clients where endpoints[node] != endpoint {
            clients[node] = nil
            await client.close()
        }
    }

    public func endpoint(of node: String) -> AgentEndpoint? { endpoints[node] }

    /// The connection to `node`'s agent (connected lazily by the caller's first call).
    public func client(for node: String) throws(AgentTransportError) -> ReconnectingClient {
        guard let endpoint = endpoints[node] else {
            throw AgentTransportError(node: node, reason: "no agent address is known for this node (no InternalIP and no upkeep.io/agent-address annotation)")
        }
        if let (known, client) = clients[node], known == endpoint { return client }
        let client = ReconnectingClient(host: endpoint.host, port: endpoint.port, security: try security.connection(to: node),
                                        configuration: configuration.client, backoff: configuration.backoff,
                                        keepAliveInterval: .seconds(configuration.keepAliveSeconds), eventLoopGroup: eventLoopGroup)
        clients[node] = (endpoint, client)
        return client
    }

    /// Closes every connection.
    public func close() async {
        let open = clients.values.map(\.1)
        clients = [:]
        for client in open { await client.close() }
    }

    // MARK: - Hello cross-check

    /// Checks each node's agent on the fleet's connection to it, all at once (bounded): it must
    /// answer, present that node's certificate, say it serves that node and architecture, and
    /// run the k3s version the API reports for the node. Agents with a connection open already
    /// only need a Ping (`warmInspectConcurrencyMax` at once); the others are dialled,
    /// `inspectConcurrencyMax` at once. A Hello that disagrees with the API on a connection
    /// made earlier (a node upgraded since) is asked again on a new connection before it is
    /// judged. Never throws: each node gets a verdict.
    public func inspect(_ nodes: [InventoryNode]) async -> [AgentInspection] {
        var warm: [(Int, Job)] = [], cold: [(Int, Job)] = []
        for (index, node) in nodes.enumerated() {
            let endpoint = endpoints[node.name]
            var job = Job(node: node, endpoint: endpoint, client: endpoint == nil ? nil : Result { () throws(AgentTransportError) in try client(for: node.name) })
            if case .success(let client)? = job.client, await client.isConnected {
                job.wasOpen = true
                warm.append((index, job))
            } else {
                cold.append((index, job))
            }
        }
        let seconds = configuration.connectTimeoutSeconds
        async let warmVerdicts = BoundedTasks.map(warm, atOnce: configuration.warmInspectConcurrencyMax) { index, job in
            (index, await Self.inspect(job, pingSeconds: seconds))
        }
        let coldVerdicts = await BoundedTasks.map(cold, atOnce: configuration.inspectConcurrencyMax) { index, job in
            (index, await Self.inspect(job, pingSeconds: seconds))
        }
        return (await warmVerdicts + coldVerdicts).sorted { $0.0 < $1.0 }.map(\.1)
    }

    private struct Job: Sendable {
        var node: InventoryNode
        var endpoint: AgentEndpoint?
        var client: Result<ReconnectingClient, AgentTransportError>?
        /// A connection was open when the inspection began (asked once: it decides warm or cold).
        var wasOpen = false
    }

    private static func inspect(_ job: Job, pingSeconds: Int) async -> AgentInspection {
        let node = job.node
        guard let endpoint = job.endpoint, let client = job.client else {
            return AgentInspection(node: node.name, endpoint: nil,
                                   verdict: .unreachable("no agent address: the node has no InternalIP and no upkeep.io/agent-address annotation"))
        }
        do {
            let reconnecting = try client.get()
            var connection = try await reconnecting.connection()
            var latency = try? await connection.ping(deadline: .now + .seconds(pingSeconds))
            let judged = AgentInspection(node: node, endpoint: endpoint, hello: connection.hello.agent, latencyMilliseconds: nil)
            if job.wasOpen, latency == nil || judged.blocksRollout {
                // A connection made earlier may be dead without a word, or its Hello older than
                // the node's upgrade: a new connection answers for the agent as it is now.
                connection = try await reconnecting.reconnect()
                latency = try? await connection.ping(deadline: .now + .seconds(pingSeconds))
            }
            return AgentInspection(node: node, endpoint: endpoint, hello: connection.hello.agent,
                                   latencyMilliseconds: latency.map { Double($0 / .microseconds(1)) / 1000 })
        } catch let error as AgentTransportError {
            return AgentInspection(node: node.name, endpoint: endpoint, verdict: .unreachable(error.reason))
        } catch ProtocolError.tls(.certificateRefused(.wrongIdentity(_, let actual))) {
            return AgentInspection(node: node.name, endpoint: endpoint,
                                   verdict: .wrongNode("the agent at \(endpoint) presents the certificate of \(actual), not of \(node.name); fix its address or its certificate"))
        } catch {
            return AgentInspection(node: node.name, endpoint: endpoint, verdict: .unreachable(AgentTransportError.reason(error, endpoint: endpoint)))
        }
    }
}

/// One agent's answer to the Hello cross-check. A verdict other than `reachable` blocks any
/// rollout that needs the node.
public struct AgentInspection: Equatable, Sendable {
    public enum Verdict: Equatable, Sendable {
        case reachable
        /// The agent answers for another node or architecture (or its certificate names another node).
        case wrongNode(String)
        /// The agent's running k3s differs from the kubelet version the API shows for the node.
        case versionMismatch(agent: String?, kubelet: String)
        case unreachable(String)
    }

    public var node: String
    public var endpoint: AgentEndpoint?
    public var verdict: Verdict
    /// What the agent said in Hello, when it got that far.
    public var agent: AgentInfo?
    /// One Ping round trip on the agent's connection.
    public var latencyMilliseconds: Double?

    public init(node: String, endpoint: AgentEndpoint?, verdict: Verdict, agent: AgentInfo? = nil, latencyMilliseconds: Double? = nil) {
        self.node = node
        self.endpoint = endpoint
        self.verdict = verdict
        self.agent = agent
        self.latencyMilliseconds = latencyMilliseconds
    }

    /// Judges an agent's Hello against the node the API shows.
    public init(node: InventoryNode, endpoint: AgentEndpoint, hello: AgentInfo, latencyMilliseconds: Double?) {
        let verdict: Verdict
        if hello.nodeName != node.name {
            verdict = .wrongNode("the agent at \(endpoint) serves node \(hello.nodeName), not \(node.name)")
        } else if (try? Arch(hello.arch)) != node.arch {
            verdict = .wrongNode("the agent reports architecture \(hello.arch), the node is labelled \(node.arch.rawValue)")
        } else if let reported = hello.k3sVersion, (try? K3sVersion(reported)) == node.version || reported == node.version.description {
            verdict = .reachable
        } else {
            verdict = .versionMismatch(agent: hello.k3sVersion, kubelet: node.version.description)
        }
        self.init(node: node.name, endpoint: endpoint, verdict: verdict, agent: hello, latencyMilliseconds: latencyMilliseconds)
    }

    public var blocksRollout: Bool { verdict != .reachable }

    /// One line for the operator.
    public var message: String {
        switch verdict {
        case .reachable: "agent \(agent?.agentVersion ?? "") at \(endpoint?.description ?? "?") runs k3s \(agent?.k3sVersion ?? "?")"
        case .wrongNode(let detail): detail
        case .versionMismatch(let reported, let kubelet):
            "the agent reports k3s \(reported ?? "(unknown)") but the API shows kubelet \(kubelet); wait for the node to settle or check the agent's k3s path"
        case .unreachable(let reason): "unreachable: \(reason)"
        }
    }
}
