import Testing
import UpkeepProtocol

/// Message rules that JSON types alone do not express.
@Suite struct MessageTests {
    @Test func versionNegotiationPicksTheHighestCommonVersion() {
        #expect(ProtocolVersion.negotiate(offered: 1...3, supported: 1...2) == 2)
        #expect(ProtocolVersion.negotiate(offered: 2...2, supported: 1...3) == 2)
        #expect(ProtocolVersion.negotiate(offered: 3...4, supported: 1...2) == nil)
    }

    @Test func uploadFlagMustMatchTheMethod() throws {
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "a", count: 64)))
        let stage = StageRequest(operationID: "op-1", k3sVersion: "v1.31.2+k3s1", sha256: sha, bytes: 10)
        #expect(throws: MessageError.self) { try RequestEnvelope(.stage(stage), upload: false).validate() }
        try RequestEnvelope(.stage(stage), upload: true).validate()
        #expect(throws: MessageError.self) { try RequestEnvelope(.status(StatusRequest()), upload: true).validate() }
    }

    @Test func anImagesStageNamesAReleaseTarballAndABinaryStageNamesNone() throws {
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "a", count: 64)))
        func stage(_ artifact: ArtifactKind?, _ fileName: String?) -> StageRequest {
            StageRequest(operationID: "op-1", k3sVersion: "v1.31.2+k3s1", sha256: sha, bytes: 10, artifact: artifact, fileName: fileName)
        }
        for name in ["k3s-airgap-images-amd64.tar", "k3s-airgap-images-arm64.tar.zst", "k3s-airgap-images-s390x.tar.gz"] {
            try stage(.airgapImages, name).validate()
        }
        for name in ["k3s-airgap-images-amd64.zip", "k3s-airgap-images-.tar", "../k3s-airgap-images-amd64.tar",
                     "k3s-airgap-images-amd64/x.tar", "k3s-airgap-images-AMD64.tar"] {
            #expect(throws: MessageError.self, "\(name)") { try stage(.airgapImages, name).validate() }
        }
        #expect(throws: MessageError.self) { try stage(.airgapImages, nil).validate() }
        #expect(throws: MessageError.self) { try stage(nil, "k3s-airgap-images-amd64.tar").validate() }
        try stage(nil, nil).validate()
        try stage(.k3sBinary, nil).validate()
        #expect(ArtifactKind.airgapImagesArch("k3s-airgap-images-arm64.tar.zst") == "arm64")
    }

    @Test func restoreBackupIsTheOtherUpload() throws {
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "b", count: 64)))
        let request = RestoreBackupRequest(operationID: "r-1", sha256: sha, bytes: 10, format: .etcdSnapshot, k3sVersion: "v1.30.6+k3s1")
        try RequestEnvelope(.restoreBackup(request), upload: true).validate()
        #expect(throws: MessageError.self) { try RequestEnvelope(.restoreBackup(request), upload: false).validate() }
        #expect(Method.allCases.filter(\.hasUpload) == [.stage, .restoreBackup])
        #expect(!Method.operation.isMutating && Method.stopK3s.isMutating)
    }

    @Test func aRenewalNamesOnlyKnownKeyTypesAndBoundsItsPEM() throws {
        try CertificateRequestRequest().validate()
        try CertificateRequestRequest(keyType: "ecdsa-p256").validate()
        #expect(throws: MessageError.self) { try CertificateRequestRequest(keyType: "rsa-4096").validate() }
        #expect(throws: MessageError.self) { try InstallCertificateRequest(certificate: "").validate() }
        #expect(throws: MessageError.self) {
            try InstallCertificateRequest(certificate: String(repeating: "A", count: CertificateRequestResult.pemBytesMax + 1)).validate()
        }
    }

    /// `reachPeers`: 1...512 peers, each an address literal and a port, a connect bound of 1...10 s;
    /// beyond, a refusal that says what to do. Its result round-trips through the wire JSON.
    @Test func reachPeersIsBoundedAndNamesAddressesOnly() throws {
        func request(_ count: Int, host: String = "10.0.0.4", port: Int = 10250, timeout: Int = 3) -> ReachPeersRequest {
            ReachPeersRequest(peers: (0..<count).map { ReachPeer(node: "node-\($0)", host: host, port: port) }, timeoutSeconds: timeout)
        }
        try request(1).validate()
        try request(ReachPeersRequest.peersMax).validate()
        try request(2, host: "fd00::4").validate()
        #expect(throws: MessageError.invalid("reachPeers.peers must list 1...512 peers (lists 513); split a larger cluster over several requests")) {
            try request(ReachPeersRequest.peersMax + 1).validate()
        }
        #expect(throws: MessageError.self) { try request(0).validate() }
        #expect(throws: MessageError.invalid("reachPeers.peers.host \"node-2.example\" is not an IPv4 or IPv6 address; give the node's InternalIP")) {
            try request(1, host: "node-2.example").validate()
        }
        for port in [0, 65536] { #expect(throws: MessageError.self, "port \(port)") { try request(1, port: port).validate() } }
        for timeout in [0, 11] { #expect(throws: MessageError.self, "timeout \(timeout)") { try request(1, timeout: timeout).validate() } }

        let envelope = RequestEnvelope(.reachPeers(request(2)), timeoutMs: 30_000)
        #expect(try WireJSON.decode(RequestEnvelope.self, from: try WireJSON.encode(envelope)) == envelope)
        let answer = ResponseEnvelope(.reachPeers(ReachPeersResult(peers: [
            ReachPeerResult(node: "agent-1", host: "10.0.0.4", port: 10250, outcome: .reachable, message: "", elapsedMs: 1),
            ReachPeerResult(node: "agent-2", host: "10.0.0.5", port: 10250, outcome: .refused, message: "Connection refused (errno 111)", elapsedMs: 0),
        ])))
        #expect(try WireJSON.decode(ResponseEnvelope.self, from: try WireJSON.encode(answer)) == answer)
        #expect(!Method.reachPeers.isMutating)
    }

    @Test func fieldRulesAreChecked() throws {
        #expect(OperationID(rawValue: "op 1") == nil)
        #expect(OperationID(rawValue: String(repeating: "x", count: 129)) == nil)
        #expect(SHA256Hex(rawValue: String(repeating: "A", count: 64)) == nil)
        #expect(throws: MessageError.self) {
            try DrainRequest(operationID: "d-1", timeoutSeconds: 0).validate()
        }
        #expect(throws: MessageError.self) {
            try RequestEnvelope(.status(StatusRequest()), timeoutMs: 0).validate()
        }
        #expect(throws: MessageError.self) {
            try Hello(protocolVersions: 1...1, software: "x", streamWindowBytes: 1024).validate()
        }
    }

    @Test func everyMutatingRequestCarriesItsOperationID() throws {
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "0", count: 64)))
        let requests: [RequestPayload] = [
            .status(StatusRequest()), .probe(ProbeRequest()),
            .stage(StageRequest(operationID: "m", k3sVersion: "v1", sha256: sha, bytes: 1)),
            .install(InstallRequest(operationID: "m", sha256: sha, k3sVersion: "v1", healthTimeoutSeconds: 1, watchdogTimeoutSeconds: 1)),
            .rollback(RollbackRequest(operationID: "m", healthTimeoutSeconds: 1)),
            .cordon(CordonRequest(operationID: "m")), .drain(DrainRequest(operationID: "m", timeoutSeconds: 1)),
            .uncordon(UncordonRequest(operationID: "m")), .backup(BackupRequest(operationID: "m")),
            .commit(CommitRequest(operationID: "m", installOperationID: "i")),
            .operation(OperationRequest(operationID: "i")),
            .restoreBackup(RestoreBackupRequest(operationID: "m", sha256: sha, bytes: 1, format: .sqliteTar, k3sVersion: "v1")),
            .stopK3s(StopK3sRequest(operationID: "m")),
            .restore(RestoreRequest(operationID: "m", backupSHA256: sha, binarySHA256: sha, k3sVersion: "v1", healthTimeoutSeconds: 1)),
            .rejoin(RejoinRequest(operationID: "m", binarySHA256: sha, k3sVersion: "v1", healthTimeoutSeconds: 1)),
            // A renewal's two methods are idempotent by content: no operation id (PROTOCOL.md section 12).
            .certificateRequest(CertificateRequestRequest(keyType: "ed25519")),
            .installCertificate(InstallCertificateRequest(certificate: "-----BEGIN CERTIFICATE-----")),
            // Read-only: asks the node's etcd, changes nothing.
            .etcdHealth(EtcdHealthRequest(timeoutSeconds: 1)),
            .clusterDNS(ClusterDNSRequest(name: "kubernetes.default.svc.cluster.local", timeoutSeconds: 1)),
            .reachPeers(ReachPeersRequest(peers: [ReachPeer(node: "agent-1", host: "10.0.0.4", port: 10250)], timeoutSeconds: 1)),
        ]
        #expect(Set(requests.map(\.method)) == Set(Method.allCases))
        for request in requests {
            #expect((request.operationID != nil) == request.method.isMutating, "\(request.method)")
        }
    }

    @Test func unknownMethodDecodesAsItsOwnError() {
        let json = Array(#"{"method":"reboot","params":{}}"#.utf8)
        #expect(throws: MessageError.unknownMethod("reboot")) {
            _ = try WireJSON.decode(RequestEnvelope.self, from: json)
        }
    }

    @Test func unknownFieldsAreIgnored() throws {
        let json = Array(#"{"method":"cordon","params":{"operationID":"c-1","future":1},"extra":[1,2]}"#.utf8)
        let envelope = try WireJSON.decode(RequestEnvelope.self, from: json)
        #expect(envelope == RequestEnvelope(.cordon(CordonRequest(operationID: "c-1"))))
    }
}
