import Logging
import UpkeepHTTP

/// The bounds the controller's side of the protocol reaches, counted for the whole process in
/// `ProtocolClient.limits` (every connection to every agent): each logged, at most one line per
/// bound a minute (`LimitLog`). `upkeep serve` exports them as
/// `upkeep_agent_client_limits_reached_total{limit}` (docs/metrics.md); a one-shot command only
/// logs them.
public enum ProtocolClientLimit: String, CaseIterable, Hashable, Sendable {
    /// `ClientConfiguration.queuedCallsMax`: a call refused at once, every slot busy and the queue full.
    case queuedCalls = "queued_calls"
    /// `ClientConfiguration.progressEventsBufferMax`: a call's oldest progress event dropped, its
    /// caller not reading them as fast as they came.
    case progressEvents = "progress_events"
    /// The agent answered `busy` to a new connection: it is at its connection limit (PROTOCOL.md 5.2).
    case agentBusy = "agent_busy"
    /// `Backoff.attemptsMax`, or the call's deadline, reached while `ReconnectingClient` retried:
    /// the call failed with the last error.
    case attempts
    /// A frame from the agent whose declared length is beyond its type's bound (PROTOCOL.md 4):
    /// the connection was closed, its calls failed as a protocol violation.
    case frameBytes = "frame_bytes"
    /// `ClientConfiguration.connectTimeout` passed after Hello with no HelloReply: the connect failed.
    case helloTimeout = "hello_timeout"
    /// `ClientConfiguration.outbound.pendingBytesMax`: more bytes waited for an agent that did not
    /// read; the connection was closed, its calls failed.
    case outboundBytes = "outbound_bytes"
    /// `ClientConfiguration.outbound.drainTimeout`: an agent did not read what waited for it below
    /// the low water mark in time; the connection was closed, its calls failed.
    case drainTimeout = "drain_timeout"
    /// `ReconnectingClient`'s dial backoff: a dial to an agent waited, because the dials before
    /// it failed (jittered, doubling from `Backoff.initialDelay` up to `maximumDelay`).
    case reconnectBackoff = "reconnect_backoff"

}

extension ProtocolClient {
    /// Every bound the process's protocol clients reached, since it started.
    public static let limits = LimitLog<ProtocolClientLimit>(logger: Logger(label: "upkeep.protocol.client"))
}
