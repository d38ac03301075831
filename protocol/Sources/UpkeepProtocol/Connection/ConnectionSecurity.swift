import NIOCore
import UpkeepPKI
import UpkeepTLS

/// What secures a connection: the step put in front of the frame codec. Production uses
/// `tls(…)` (mutual TLS 1.3, identities checked by UpkeepTLS); `plaintext` exists for tests on
/// 127.0.0.1 and must never be used across a network.
public struct ConnectionSecurity: Sendable {
    enum Mode: Sendable {
        case plaintext
        case tls(TLSContext, PeerExpectation, serverName: String?, handshakeTimeout: TimeAmount)
    }

    let mode: Mode

    /// No security: frames go as TCP bytes, and requests have no peer identity.
    public static let plaintext = ConnectionSecurity(mode: .plaintext)

    /// TLS with `context`. On a server, `expecting` says which peers are accepted (an agent:
    /// `.roles([.controller])`); on a client, who must answer (the controller dialling node N:
    /// `.identity(PeerIdentity(role: .agent, name: N))`).
    public static func tls(_ context: TLSContext, expecting: PeerExpectation, serverName: String? = nil,
                           handshakeTimeout: Duration = .seconds(10)) -> ConnectionSecurity {
        ConnectionSecurity(mode: .tls(context, expecting, serverName: serverName, handshakeTimeout: TimeAmount(handshakeTimeout)))
    }

    enum Side { case client, server }

    /// True when a connection is secured only once its TLS handshake completes.
    var needsHandshake: Bool {
        if case .tls = mode { true } else { false }
    }

    /// Puts the security step first in a new channel's pipeline. Returns true when the
    /// connection is secured only once `TLSHandshakeCompleted` arrives, false when it is ready
    /// (as it is) at channelActive. `handshakeTimeoutMax` shortens the handshake's timeout (a
    /// server's own bound).
    func install(in pipeline: ChannelPipeline.SynchronousOperations, side: Side, handshakeTimeoutMax: TimeAmount? = nil) throws -> Bool {
        switch mode {
        case .plaintext:
            return false
        case .tls(let context, let expectation, let serverName, let timeout):
            let handshakeTimeout = min(timeout, handshakeTimeoutMax ?? timeout)
            let handler = switch side {
            case .server: context.makeServerHandler(expecting: expectation, handshakeTimeout: handshakeTimeout)
            case .client: context.makeClientHandler(expecting: expectation, serverName: serverName, handshakeTimeout: handshakeTimeout)
            }
            try pipeline.addHandler(handler, position: .first)
            return true
        }
    }
}
