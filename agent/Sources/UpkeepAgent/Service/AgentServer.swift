import Logging
import NIOCore
import UpkeepAgentCore
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

#if canImport(Glibc)
import Glibc
#endif

/// The agent's protocol endpoint: mutual TLS 1.3 with the cluster CA, serving only controller
/// certificates, in front of an `AgentRequestHandler`.
public enum AgentServer {
    /// Loads the CA, the agent's chain and key (which must be mode 0600 and name this node), and
    /// binds the listener from the configuration.
    public static func start(service: AgentService, group: any EventLoopGroup, logger: Logger,
                             configuration: ServerConfiguration = ServerConfiguration()) async throws -> ProtocolServer {
        let config = service.environment.config
        let context = try tlsContext(config)
        let handler = AgentRequestHandler(service: service, k3sVersion: await service.status().live?.k3sVersion)
        return try await ProtocolServer.bind(host: config.listenAddress, port: config.listenPort,
                                             security: .tls(context, expecting: .roles([.controller])), handler: handler,
                                             configuration: configuration, logger: logger, eventLoopGroup: group)
    }

    public static func tlsContext(_ config: AgentConfig) throws -> TLSContext {
        var status = stat()
        guard stat(config.keyFile, &status) == 0 else {
            throw AgentFailure(.notFound, "tls.key \(config.keyFile) does not exist; issue one with `upkeep pki issue agent \(config.nodeName)`")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw AgentFailure(.conflict, "tls.key \(config.keyFile) is readable by others (mode \(String(status.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        let ca = try Certificate.loadChain(pemFile: config.caFile)
        let chain = try Certificate.loadChain(pemFile: config.certificateFile)
        guard let leaf = chain.first else { throw AgentFailure(.notFound, "tls.certificate \(config.certificateFile) holds no certificate") }
        let identity = try PeerIdentity.from(leaf)
        guard identity.role == .agent, identity.name == config.nodeName else {
            throw AgentFailure(.conflict, "tls.certificate \(config.certificateFile) is for \(identity), not agent \(config.nodeName); issue one with `upkeep pki issue agent \(config.nodeName)`")
        }
        return try TLSContext.internal(ca: ca, chain: chain, key: try PrivateKey(pemFile: config.keyFile))
    }
}
