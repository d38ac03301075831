import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepPKI
import UpkeepProtocol
import UpkeepTestSupport
import UpkeepTLS

/// A cluster CA with a controller and the agent of node-1, written as the agent reads them.
struct AgentPKI {
    let directory: PKIDirectory
    let controller: IssuedIdentity
    let agent: IssuedIdentity

    init(in path: String) throws {
        directory = PKIDirectory(path: path)
        _ = try directory.initialize(validity: PKIDirectory.validity(days: 2))
        controller = try directory.issue(try PeerIdentity(role: .controller, name: "controller"), validity: PKIDirectory.validity(days: 1))
        agent = try directory.issue(try PeerIdentity(role: .agent, name: "node-1"), validity: PKIDirectory.validity(days: 1))
    }

    func configure(_ config: inout AgentConfig) {
        config.caFile = directory.caCertificatePath
        config.certificateFile = agent.certificatePath
        config.keyFile = agent.keyPath
        config.listenAddress = "127.0.0.1"
        config.listenPort = 0
    }

    func controllerSecurity() throws -> ConnectionSecurity {
        let ca = try Certificate.loadChain(pemFile: directory.caCertificatePath)
        let context = try TLSContext.internal(ca: ca, chain: [controller.certificate], key: controller.key)
        return .tls(context, expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")))
    }
}

@Suite(.serialized) struct ProtocolServingTests {
    @Test func controllerStagesInstallsAndCommitsOverMutualTLS() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let pki = try AgentPKI(in: node.directory.file("pki"))
        var config = node.config()
        pki.configure(&config)
        let service = try await startService(on: node, config: config)
        let server = try await AgentServer.start(service: service, group: MultiThreadedEventLoopGroup.singleton,
                                                 logger: AgentBootstrap.logger(level: .warning))
        let client = try await ProtocolClient.connect(host: "127.0.0.1", port: server.port, security: try pki.controllerSecurity())
        #expect(client.hello.agent.nodeName == "node-1" && client.hello.agent.k3sVersion == v1 && client.hello.agent.role == .server)

        let artifact = try node.binary(v2)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: artifact.path))
        let sha = try #require(SHA256Hex(rawValue: artifact.sha256))
        let staged = try await client.call(StageRequest(operationID: "stage-1", k3sVersion: v2, sha256: sha, bytes: Int64(bytes.count)),
                                           upload: ChunkSource(bytes: ByteBuffer(bytes: bytes)), deadline: .now + .seconds(60))
        #expect(staged == StageResult(sha256: sha, bytes: Int64(bytes.count), alreadyStaged: false))
        let install = InstallRequest(operationID: "install-1", sha256: sha, k3sVersion: v2, healthTimeoutSeconds: 20, watchdogTimeoutSeconds: 600)
        let installed = try await client.call(install, deadline: .now + .seconds(60))
        #expect(installed.outcome == .installed && installed.k3sVersion == v2 && installed.probe.healthy)
        let replayed = try await client.call(install, deadline: .now + .seconds(60))
        #expect(replayed == installed)
        let status = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
        #expect(status.agent.k3sVersion == v2 && status.watchdog?.installOperationID == "install-1")
        #expect(status.recentOperations.first?.operationID == "install-1")
        let committed = try await client.call(CommitRequest(operationID: "commit-1", installOperationID: "install-1"), deadline: .now + .seconds(30))
        #expect(committed.k3sVersion == v2)
        // A typed error for an artifact that was never staged.
        do {
            _ = try await client.call(InstallRequest(operationID: "install-2", sha256: try #require(SHA256Hex(rawValue: String(repeating: "0", count: 64))),
                                                     k3sVersion: v2, healthTimeoutSeconds: 5, watchdogTimeoutSeconds: 5), deadline: .now + .seconds(30))
            Issue.record("an unstaged install was accepted")
        } catch ProtocolError.remote(let error) {
            #expect(error.code == .notFound && error.message.contains("stage it first"))
        }
        await client.close()
        await server.shutdown()
    }

    /// The real `openssl s_client` against the agent's port: only a controller certificate from
    /// the cluster CA gets a session; no certificate, an agent certificate and another CA's
    /// controller certificate are refused with an alert.
    @Test func opensslClientIsRefusedWithoutAControllerCertificate() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let pki = try AgentPKI(in: node.directory.file("pki"))
        let other = try AgentPKI(in: node.directory.file("other-pki"))
        var config = node.config()
        pki.configure(&config)
        let service = try await startService(on: node, config: config)
        let server = try await AgentServer.start(service: service, group: MultiThreadedEventLoopGroup.singleton,
                                                 logger: AgentBootstrap.logger(level: .critical))
        func sClient(_ identity: IssuedIdentity?) throws -> ProcessResult {
            var arguments = ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_3", "-CAfile", pki.directory.caCertificatePath,
                             "-verify_return_error", "-servername", "node-1"]
            if let identity { arguments += ["-cert", identity.certificatePath, "-key", identity.keyPath] }
            // A Hello frame would follow a real handshake; here, the server's verdict is what counts.
            return try runProcess("/bin/sh", ["-c", "sleep 1 | openssl " + arguments.joined(separator: " ")], timeoutSeconds: 30)
        }
        let accepted = try sClient(pki.controller)
        #expect(!accepted.error.contains("alert"), "controller refused: \(accepted.error)")
        #expect(accepted.output.contains("Verify return code: 0 (ok)"))
        let none = try sClient(nil)
        #expect(none.error.contains("alert certificate required"), "\(none.error)")
        let agent = try sClient(pki.agent)
        #expect(agent.error.contains("alert handshake failure"), "agent certificate accepted: \(agent.error)")
        let foreign = try sClient(other.controller)
        #expect(foreign.error.contains("alert unknown ca"), "another CA's certificate accepted: \(foreign.error)")
        await server.shutdown()
    }

    @Test func keyReadableByOthersOrCertificateForAnotherNodeIsRefusedAtStart() throws {
        let directory = try TemporaryDirectory()
        let pki = try AgentPKI(in: directory.file("pki"))
        var config = AgentConfig(nodeName: "node-1")
        pki.configure(&config)
        #expect(throws: Never.self) { try AgentServer.tlsContext(config) }
        var other = config
        other.nodeName = "node-2"
        #expect { try AgentServer.tlsContext(other) } throws: { "\($0)".contains("but this process is upkeep://agent/node-2") }
        chmod(config.keyFile, 0o644)
        #expect { try AgentServer.tlsContext(config) } throws: { "\($0)".contains("chmod 600") }
    }
}
