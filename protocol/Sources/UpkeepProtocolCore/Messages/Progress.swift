/// Payload of a Progress frame: something a long request did on the way. Progress is advisory:
/// a slow consumer may miss events (PROTOCOL.md, "Progress"); the Response carries the outcome.
public enum ProgressEvent: Codable, Equatable, Sendable {
    /// A named step of an operation (e.g. "restarting", "probing").
    case step(StepProgress)
    /// A pod handled by a drain.
    case pod(PodProgress)
    /// Bytes moved so far (stage, backup).
    case bytes(ByteProgress)

    private enum Keys: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let kind = try decoder.container(keyedBy: Keys.self).decode(String.self, forKey: .kind)
        switch kind {
        case "step": self = .step(try StepProgress(from: decoder))
        case "pod": self = .pod(try PodProgress(from: decoder))
        case "bytes": self = .bytes(try ByteProgress(from: decoder))
        default: throw MessageError.invalid("progress kind \"\(kind.prefix(40))\" is not step, pod or bytes")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .step(let step):
            try container.encode("step", forKey: .kind)
            try step.encode(to: encoder)
        case .pod(let pod):
            try container.encode("pod", forKey: .kind)
            try pod.encode(to: encoder)
        case .bytes(let bytes):
            try container.encode("bytes", forKey: .kind)
            try bytes.encode(to: encoder)
        }
    }
}

public struct StepProgress: Codable, Equatable, Sendable {
    public var step: String
    public var message: String

    public init(step: String, message: String) {
        self.step = step
        self.message = message
    }
}

public enum PodAction: String, Codable, Sendable, CaseIterable {
    /// An eviction was requested.
    case evicting
    /// The pod is gone.
    case evicted
    /// Left alone (DaemonSet, mirror pod, not matching the selector).
    case skipped
    /// The eviction was refused (429, a PodDisruptionBudget); it will be tried again.
    case retrying
    /// Gave up on this pod; the drain fails.
    case failed
}

public struct PodProgress: Codable, Equatable, Sendable {
    public var namespace: String
    public var name: String
    public var action: PodAction
    public var message: String

    public init(namespace: String, name: String, action: PodAction, message: String) {
        self.namespace = namespace
        self.name = name
        self.action = action
        self.message = message
    }
}

public struct ByteProgress: Codable, Equatable, Sendable {
    public var doneBytes: Int64
    public var totalBytes: Int64?

    public init(doneBytes: Int64, totalBytes: Int64?) {
        self.doneBytes = doneBytes
        self.totalBytes = totalBytes
    }
}
