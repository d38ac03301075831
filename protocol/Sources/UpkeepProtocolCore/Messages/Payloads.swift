/// Every request a client can send; what a `RequestHandler` switches on.
public enum RequestPayload: Equatable, Sendable {
    case status(StatusRequest)
    case probe(ProbeRequest)
    case stage(StageRequest)
    case install(InstallRequest)
    case rollback(RollbackRequest)
    case cordon(CordonRequest)
    case drain(DrainRequest)
    case uncordon(UncordonRequest)
    case backup(BackupRequest)
    case commit(CommitRequest)
    case operation(OperationRequest)
    case restoreBackup(RestoreBackupRequest)
    case stopK3s(StopK3sRequest)
    case restore(RestoreRequest)
    case rejoin(RejoinRequest)
    case certificateRequest(CertificateRequestRequest)
    case installCertificate(InstallCertificateRequest)
    case etcdHealth(EtcdHealthRequest)
    case clusterDNS(ClusterDNSRequest)
    case reachPeers(ReachPeersRequest)

    public var message: any RequestMessage {
        switch self {
        case .status(let m): m
        case .probe(let m): m
        case .stage(let m): m
        case .install(let m): m
        case .rollback(let m): m
        case .cordon(let m): m
        case .drain(let m): m
        case .uncordon(let m): m
        case .backup(let m): m
        case .commit(let m): m
        case .operation(let m): m
        case .restoreBackup(let m): m
        case .stopK3s(let m): m
        case .restore(let m): m
        case .rejoin(let m): m
        case .certificateRequest(let m): m
        case .installCertificate(let m): m
        case .etcdHealth(let m): m
        case .clusterDNS(let m): m
        case .reachPeers(let m): m
        }
    }

    public var method: Method { type(of: message).method }

    /// The operation id of a mutating request.
    public var operationID: OperationID? {
        switch self {
        case .status, .probe, .operation, .certificateRequest, .installCertificate, .etcdHealth, .clusterDNS, .reachPeers: nil
        case .stage(let m): m.operationID
        case .install(let m): m.operationID
        case .rollback(let m): m.operationID
        case .cordon(let m): m.operationID
        case .drain(let m): m.operationID
        case .uncordon(let m): m.operationID
        case .backup(let m): m.operationID
        case .commit(let m): m.operationID
        case .restoreBackup(let m): m.operationID
        case .stopK3s(let m): m.operationID
        case .restore(let m): m.operationID
        case .rejoin(let m): m.operationID
        }
    }

    static func decode<K: CodingKey>(_ method: Method, from container: KeyedDecodingContainer<K>,
                                     forKey key: K) throws -> RequestPayload {
        switch method {
        case .status: try container.decode(StatusRequest.self, forKey: key).payload
        case .probe: try container.decode(ProbeRequest.self, forKey: key).payload
        case .stage: try container.decode(StageRequest.self, forKey: key).payload
        case .install: try container.decode(InstallRequest.self, forKey: key).payload
        case .rollback: try container.decode(RollbackRequest.self, forKey: key).payload
        case .cordon: try container.decode(CordonRequest.self, forKey: key).payload
        case .drain: try container.decode(DrainRequest.self, forKey: key).payload
        case .uncordon: try container.decode(UncordonRequest.self, forKey: key).payload
        case .backup: try container.decode(BackupRequest.self, forKey: key).payload
        case .commit: try container.decode(CommitRequest.self, forKey: key).payload
        case .operation: try container.decode(OperationRequest.self, forKey: key).payload
        case .restoreBackup: try container.decode(RestoreBackupRequest.self, forKey: key).payload
        case .stopK3s: try container.decode(StopK3sRequest.self, forKey: key).payload
        case .restore: try container.decode(RestoreRequest.self, forKey: key).payload
        case .rejoin: try container.decode(RejoinRequest.self, forKey: key).payload
        case .certificateRequest: try container.decode(CertificateRequestRequest.self, forKey: key).payload
        case .installCertificate: try container.decode(InstallCertificateRequest.self, forKey: key).payload
        case .etcdHealth: try container.decode(EtcdHealthRequest.self, forKey: key).payload
        case .clusterDNS: try container.decode(ClusterDNSRequest.self, forKey: key).payload
        case .reachPeers: try container.decode(ReachPeersRequest.self, forKey: key).payload
        }
    }
}

/// Every result a server can answer with. Its method must be the request's.
public enum ResponsePayload: Equatable, Sendable {
    case status(StatusResult)
    case probe(ProbeResult)
    case stage(StageResult)
    case install(InstallResult)
    case rollback(RollbackResult)
    case cordon(CordonResult)
    case drain(DrainResult)
    case uncordon(UncordonResult)
    case backup(BackupResult)
    case commit(CommitResult)
    case operation(OperationResult)
    case restoreBackup(RestoreBackupResult)
    case stopK3s(StopK3sResult)
    case restore(RestoreResult)
    case rejoin(RejoinResult)
    case certificateRequest(CertificateRequestResult)
    case installCertificate(InstallCertificateResult)
    case etcdHealth(EtcdHealthResult)
    case clusterDNS(ClusterDNSResult)
    case reachPeers(ReachPeersResult)

    public var method: Method {
        switch self {
        case .status: .status
        case .probe: .probe
        case .stage: .stage
        case .install: .install
        case .rollback: .rollback
        case .cordon: .cordon
        case .drain: .drain
        case .uncordon: .uncordon
        case .backup: .backup
        case .commit: .commit
        case .operation: .operation
        case .restoreBackup: .restoreBackup
        case .stopK3s: .stopK3s
        case .restore: .restore
        case .rejoin: .rejoin
        case .certificateRequest: .certificateRequest
        case .installCertificate: .installCertificate
        case .etcdHealth: .etcdHealth
        case .clusterDNS: .clusterDNS
        case .reachPeers: .reachPeers
        }
    }

    public var result: any ResultMessage {
        switch self {
        case .status(let r): r
        case .probe(let r): r
        case .stage(let r): r
        case .install(let r): r
        case .rollback(let r): r
        case .cordon(let r): r
        case .drain(let r): r
        case .uncordon(let r): r
        case .backup(let r): r
        case .commit(let r): r
        case .operation(let r): r
        case .restoreBackup(let r): r
        case .stopK3s(let r): r
        case .restore(let r): r
        case .rejoin(let r): r
        case .certificateRequest(let r): r
        case .installCertificate(let r): r
        case .etcdHealth(let r): r
        case .clusterDNS(let r): r
        case .reachPeers(let r): r
        }
    }

    /// The typed result of `M`, or nil when this answers another method.
    public func typedResult<M: RequestMessage>(for _: M.Type) -> M.Result? {
        result as? M.Result
    }

    static func decode<K: CodingKey>(_ method: Method, from container: KeyedDecodingContainer<K>,
                                     forKey key: K) throws -> ResponsePayload {
        switch method {
        case .status: .status(try container.decode(StatusResult.self, forKey: key))
        case .probe: .probe(try container.decode(ProbeResult.self, forKey: key))
        case .stage: .stage(try container.decode(StageResult.self, forKey: key))
        case .install: .install(try container.decode(InstallResult.self, forKey: key))
        case .rollback: .rollback(try container.decode(RollbackResult.self, forKey: key))
        case .cordon: .cordon(try container.decode(CordonResult.self, forKey: key))
        case .drain: .drain(try container.decode(DrainResult.self, forKey: key))
        case .uncordon: .uncordon(try container.decode(UncordonResult.self, forKey: key))
        case .backup: .backup(try container.decode(BackupResult.self, forKey: key))
        case .commit: .commit(try container.decode(CommitResult.self, forKey: key))
        case .operation: .operation(try container.decode(OperationResult.self, forKey: key))
        case .restoreBackup: .restoreBackup(try container.decode(RestoreBackupResult.self, forKey: key))
        case .stopK3s: .stopK3s(try container.decode(StopK3sResult.self, forKey: key))
        case .restore: .restore(try container.decode(RestoreResult.self, forKey: key))
        case .rejoin: .rejoin(try container.decode(RejoinResult.self, forKey: key))
        case .certificateRequest: .certificateRequest(try container.decode(CertificateRequestResult.self, forKey: key))
        case .installCertificate: .installCertificate(try container.decode(InstallCertificateResult.self, forKey: key))
        case .etcdHealth: .etcdHealth(try container.decode(EtcdHealthResult.self, forKey: key))
        case .clusterDNS: .clusterDNS(try container.decode(ClusterDNSResult.self, forKey: key))
        case .reachPeers: .reachPeers(try container.decode(ReachPeersResult.self, forKey: key))
        }
    }
}

private enum EnvelopeKeys: String, CodingKey {
    case method, params, result, upload, download, timeoutMs
}

private func decodeMethod(_ container: KeyedDecodingContainer<EnvelopeKeys>) throws -> Method {
    let name = try container.decode(String.self, forKey: .method)
    guard let method = Method(rawValue: name) else { throw MessageError.unknownMethod(name) }
    return method
}

/// Payload of a Request frame.
public struct RequestEnvelope: Codable, Equatable, Sendable {
    public var payload: RequestPayload
    /// Chunk frames (then ChunkEnd) follow from the client. Only for methods with an upload.
    public var upload: Bool
    /// The client gives up after this long; the server stops the handler then. Nil: no deadline.
    public var timeoutMs: Int64?

    public init(_ payload: RequestPayload, upload: Bool = false, timeoutMs: Int64? = nil) {
        self.payload = payload
        self.upload = upload
        self.timeoutMs = timeoutMs
    }

    /// Rules beyond the JSON shape: field formats, upload only where the method has one.
    public func validate() throws(MessageError) {
        try payload.message.validate()
        if upload != payload.method.hasUpload {
            throw .invalid("\(payload.method) \(payload.method.hasUpload ? "needs" : "takes no") upload stream")
        }
        if let timeoutMs, timeoutMs < 1 {
            throw .invalid("timeoutMs must be at least 1 (is \(timeoutMs))")
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: EnvelopeKeys.self)
        payload = try RequestPayload.decode(try decodeMethod(container), from: container, forKey: .params)
        upload = try container.decodeIfPresent(Bool.self, forKey: .upload) ?? false
        timeoutMs = try container.decodeIfPresent(Int64.self, forKey: .timeoutMs)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: EnvelopeKeys.self)
        try container.encode(payload.method.rawValue, forKey: .method)
        try container.encode(payload.message, forKey: .params)
        if upload { try container.encode(true, forKey: .upload) }
        try container.encodeIfPresent(timeoutMs, forKey: .timeoutMs)
    }
}

/// Payload of a Response frame.
public struct ResponseEnvelope: Codable, Equatable, Sendable {
    public var payload: ResponsePayload
    /// Chunk frames (then ChunkEnd) follow from the server.
    public var download: Bool

    public init(_ payload: ResponsePayload, download: Bool = false) {
        self.payload = payload
        self.download = download
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: EnvelopeKeys.self)
        payload = try ResponsePayload.decode(try decodeMethod(container), from: container, forKey: .result)
        download = try container.decodeIfPresent(Bool.self, forKey: .download) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: EnvelopeKeys.self)
        try container.encode(payload.method.rawValue, forKey: .method)
        try container.encode(payload.result, forKey: .result)
        if download { try container.encode(true, forKey: .download) }
    }
}
