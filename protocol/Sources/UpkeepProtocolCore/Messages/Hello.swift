/// Protocol versions (message set and rules), negotiated in Hello. Distinct from the frame
/// format version in every header, which only describes the header layout.
public enum ProtocolVersion {
    /// Versions this implementation speaks.
    public static let supported: ClosedRange<Int> = 1...1

    /// The highest version in both ranges, or nil when they do not overlap.
    public static func negotiate(offered: ClosedRange<Int>, supported: ClosedRange<Int> = supported) -> Int? {
        let low = max(offered.lowerBound, supported.lowerBound)
        let high = min(offered.upperBound, supported.upperBound)
        return low <= high ? high : nil
    }
}

/// Limits on the per-stream receive window a peer may announce.
public enum StreamWindow {
    /// At least one maximum-size chunk must fit.
    public static let bytesMin = FrameLimits.chunkPayloadBytesMax
    public static let bytesMax = 64 << 20
    public static let bytesDefault = 4 << 20
}

/// The k3s role of a node: a server runs the control plane, an agent only workloads.
public enum NodeRole: String, Codable, Sendable, CaseIterable {
    case server
    case agent
}

/// First frame of a connection, client to server.
public struct Hello: Codable, Equatable, Sendable {
    /// Lowest and highest protocol version the client speaks.
    public var protocolVersionMin: Int
    public var protocolVersionMax: Int
    /// The client's program and version, for logs (e.g. "upkeep 0.1.0").
    public var software: String
    /// Chunk bytes the client buffers per download stream before the server must wait for a
    /// WindowUpdate.
    public var streamWindowBytes: Int

    public init(protocolVersions: ClosedRange<Int> = ProtocolVersion.supported, software: String,
                streamWindowBytes: Int = StreamWindow.bytesDefault) {
        protocolVersionMin = protocolVersions.lowerBound
        protocolVersionMax = protocolVersions.upperBound
        self.software = software
        self.streamWindowBytes = streamWindowBytes
    }

    public func validate() throws(MessageError) {
        guard protocolVersionMin >= 1, protocolVersionMin <= protocolVersionMax else {
            throw .invalid("Hello: protocol version range \(protocolVersionMin)...\(protocolVersionMax) is empty or starts below 1")
        }
        try checkWindow(streamWindowBytes, in: "Hello")
        try checkText(software, field: "Hello.software", bytesMax: 256)
    }
}

/// What an agent reports about itself and its node.
public struct AgentInfo: Codable, Equatable, Sendable {
    /// Version of the upkeep-agent program.
    public var agentVersion: String
    /// The Kubernetes node name this agent serves.
    public var nodeName: String
    /// Architecture as k3s and `kubernetes.io/arch` name it: amd64, arm64, arm, s390x.
    public var arch: String
    public var role: NodeRole
    /// Running k3s version as `k3s --version` prints it (e.g. "v1.30.6+k3s1"); nil when unknown.
    public var k3sVersion: String?

    public init(agentVersion: String, nodeName: String, arch: String, role: NodeRole, k3sVersion: String?) {
        self.agentVersion = agentVersion
        self.nodeName = nodeName
        self.arch = arch
        self.role = role
        self.k3sVersion = k3sVersion
    }

    public func validate() throws(MessageError) {
        try checkText(agentVersion, field: "agent.agentVersion", bytesMax: 128)
        try checkText(nodeName, field: "agent.nodeName", bytesMax: 253)
        try checkText(arch, field: "agent.arch", bytesMax: 32)
        if let k3sVersion { try checkText(k3sVersion, field: "agent.k3sVersion", bytesMax: 128) }
    }
}

/// Answer to Hello, server to client; after it the client may send requests.
public struct HelloReply: Codable, Equatable, Sendable {
    /// The negotiated protocol version: the highest both sides speak.
    public var protocolVersion: Int
    public var agent: AgentInfo
    /// Chunk bytes the server buffers per upload stream before the client must wait for a
    /// WindowUpdate.
    public var streamWindowBytes: Int
    /// Requests the server runs at once on this connection; more are answered `busy`.
    public var concurrentRequestsMax: Int

    public init(protocolVersion: Int, agent: AgentInfo, streamWindowBytes: Int, concurrentRequestsMax: Int) {
        self.protocolVersion = protocolVersion
        self.agent = agent
        self.streamWindowBytes = streamWindowBytes
        self.concurrentRequestsMax = concurrentRequestsMax
    }

    public func validate() throws(MessageError) {
        guard ProtocolVersion.supported.contains(protocolVersion) else {
            throw .invalid("HelloReply: protocol version \(protocolVersion) was not offered")
        }
        guard concurrentRequestsMax >= 1 else {
            throw .invalid("HelloReply: concurrentRequestsMax must be at least 1")
        }
        try checkWindow(streamWindowBytes, in: "HelloReply")
        try agent.validate()
    }
}

/// Payload of GoAway, server to client: no new requests on this connection.
public struct GoAway: Codable, Equatable, Sendable {
    /// The highest request id the server accepted. Requests with higher ids were not processed
    /// (they are answered `shuttingDown`) and may be sent again on a new connection.
    public var lastRequestID: UInt32
    /// Why, for logs (e.g. "shutting down", "idle").
    public var reason: String

    public init(lastRequestID: UInt32, reason: String) {
        self.lastRequestID = lastRequestID
        self.reason = reason
    }
}

private func checkWindow(_ bytes: Int, in message: String) throws(MessageError) {
    guard (StreamWindow.bytesMin...StreamWindow.bytesMax).contains(bytes) else {
        throw .invalid("\(message): streamWindowBytes \(bytes) outside \(StreamWindow.bytesMin)...\(StreamWindow.bytesMax)")
    }
}

/// Non-empty, bounded, no control characters.
func checkText(_ text: String, field: String, bytesMax: Int) throws(MessageError) {
    guard !text.isEmpty, text.utf8.count <= bytesMax else {
        throw .invalid("\(field) must have 1...\(bytesMax) bytes (has \(text.utf8.count))")
    }
    guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
        throw .invalid("\(field) contains control characters")
    }
}
