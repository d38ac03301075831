import Foundation
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

/// How the controller secures each agent connection: mutual TLS 1.3 with the controller's
/// certificate, verified against the cluster CA, and only the certificate of the node dialled
/// (`upkeep://agent/<node>`) accepted, so an agent answering for another node is refused in
/// the handshake.
public struct FleetSecurity: Sendable {
    public let context: TLSContext
    public let handshakeTimeoutSeconds: Int

    public init(context: TLSContext, handshakeTimeoutSeconds: Int = 10) {
        self.context = context
        self.handshakeTimeoutSeconds = handshakeTimeoutSeconds
    }

    /// Reads the cluster CA, the controller's certificate chain and its key, refusing
    /// (`OwnIdentityError`) a key readable by group or others, and a certificate that has
    /// expired, is not yet valid, is not a controller's, does not match the key or was not
    /// issued by the CA (docs/pki.md, "Checks at start"). Agent certificates in the deny list
    /// at `deniedFile` (none when it does not exist) are refused in every handshake.
    public static func load(caFile: String, certificateFile: String, keyFile: String, deniedFile: String? = nil,
                            now: Date = Date()) throws -> FleetSecurity {
        let own = try OwnIdentity.load(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, role: .controller, now: now)
        let denied = try deniedFile.map { try CertificateDenyList.load(path: $0) } ?? .empty
        return FleetSecurity(context: try TLSContext.internal(ca: own.ca, chain: own.chain, key: own.key, denied: denied))
    }

    /// The security for dialling `node`'s agent.
    func connection(to node: String) throws(AgentTransportError) -> ConnectionSecurity {
        let identity: PeerIdentity
        do { identity = try PeerIdentity(role: .agent, name: node) } catch {
            throw AgentTransportError(node: node, reason: "\"\(node)\" cannot name an agent certificate: \(error)")
        }
        return .tls(context, expecting: .identity(identity), handshakeTimeout: .seconds(Int64(handshakeTimeoutSeconds)))
    }
}

/// No answer came from a node's agent: the request may or may not have run (send it again with
/// the same operation id), or the connection could not be made or secured.
public struct AgentTransportError: Error, Equatable, Sendable, CustomStringConvertible {
    public var node: String
    public var reason: String

    public init(node: String, reason: String) {
        self.node = node
        self.reason = reason
    }

    public var description: String { "no answer from the agent of \(node): \(reason)" }
}

extension AgentTransportError {
    /// Why a connection to `endpoint` failed, in words an operator can act on: SwiftNIO's own
    /// connect errors are long and name no remedy.
    static func reason(_ error: any Error, endpoint: AgentEndpoint?) -> String {
        let text = "\(error)"
        let place = endpoint.map { " at \($0)" } ?? ""
        if case ProtocolError.remote(let response) = error, response.code == .busy {
            // Busy on request id 0 is the connection limit (PROTOCOL.md 5.2); on a request, the
            // connection's concurrent requests, which this controller's client keeps within.
            let hint = endpoint.map { "; see what holds its connections on the node (ss -tn state established '( sport = :\($0.port) )')" } ?? ""
            return "the agent\(place) is at its connection limit (it answered: \(response.message))\(hint), then retry"
        }
        if text.contains("Connection refused") {
            return "connection refused\(place): nothing listens there (is upkeep-agent running, and is agentPort or the upkeep.io/agent-address annotation right?)"
        }
        if text.contains("No route to host") || text.contains("Network is unreachable") {
            return "no route\(place): the address is not reachable from the controller"
        }
        return text
    }
}

