import Logging
import NIOCore
import UpkeepAgentCore
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The agent's protocol endpoint: mutual TLS 1.3 with the cluster CA, serving only controller
/// certificates, in front of an `AgentRequestHandler`. Its bounds reached, refusals and TLS
/// handshakes are counted in the agent's metrics text file (`AgentLimits.server`, `.handshakes`).
public enum AgentServer {
    /// Loads the CA, the agent's chain and key (which must be mode 0600 and name this node;
    /// `AgentIdentity`), and binds the listener from the configuration.
    public static func start(service: AgentService, group: any EventLoopGroup, logger: Logger,
                             configuration: ServerConfiguration = ServerConfiguration()) async throws -> ProtocolServer {
        let config = service.environment.config
        let identity = try AgentIdentity(config: config)
        let handler = AgentRequestHandler(service: service, identity: identity, k3sVersion: await service.status().live?.k3sVersion)
        // Each connection takes the identity's context of the moment, so a renewal applies to
        // the next connection without a restart.
        return try await ProtocolServer.bind(host: config.listenAddress, port: config.listenPort,
                                             security: { .tls(identity.context(), expecting: .roles([.controller])) }, handler: handler,
                                             configuration: configuration, logger: logger, limits: service.environment.limits.server,
                                             handshakes: service.environment.limits.handshakes, eventLoopGroup: group)
    }

    /// The TLS context from the agent's own identity files, refused (`OwnIdentityError`) when
    /// the key is missing or readable by others, or the certificate has expired, is not yet
    /// valid, names another role or node, does not match the key or was not issued by the CA.
    public static func tlsContext(_ config: AgentConfig, now: Date = Date()) throws -> TLSContext {
        let own = try OwnIdentity.load(caFile: config.caFile, certificateFile: config.certificateFile, keyFile: config.keyFile,
                                       role: .agent, name: config.nodeName, now: now)
        return try TLSContext.internal(ca: own.ca, chain: own.chain, key: own.key)
    }
}
