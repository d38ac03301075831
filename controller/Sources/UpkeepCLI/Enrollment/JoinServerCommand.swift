import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import UpkeepEnrollment
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepPOSIX
import UpkeepTLS

/// `upkeep join-server`: the listener nodes enroll through (`upkeep-agent join`), until SIGTERM or
/// SIGINT. HTTPS with the controller's certificate (server authentication only: joining nodes
/// have no certificate yet); it holds the CA key to sign nodes' CSRs. docs/enrollment.md.
struct JoinServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join-server",
        abstract: "Accept node enrollments: sign each node's CSR for a valid bootstrap token.",
        discussion: "Needs the CA key beside pki.ca (ca.key, mode 0600). Run it while nodes join; stop it afterwards if you like.")

    @OptionGroup var configOption: ConfigOption

    @Option(help: ArgumentHelp("Address and port to listen on (default: join.listen, 0.0.0.0:9662).", valueName: "HOST:PORT"))
    var listen: String?

    /// Small requests only; a join is answered within seconds.
    static let serverConfiguration = HTTPServer.Configuration(headerBytesMax: 8 << 10, bodyBytesMax: JoinWire.bodyBytesMax,
                                                              headerReadTimeoutSeconds: 10, requestTimeoutSeconds: 30, idleTimeoutSeconds: 30,
                                                              connectionsMax: 64, awaitingRequestPerSourceMax: 8, backlog: 64)

    func run() async throws {
        let config = try configOption.load()
        let address = listen ?? config.join.listen
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--listen \(address): write HOST:PORT, e.g. 0.0.0.0:9662")
        }
        let host = String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let pki = PKIDirectory(path: (config.pki.ca as NSString).deletingLastPathComponent)
        let ca: CertificateAuthority
        let tls: TLSContext
        do {
            ca = try pki.loadCA()
            let chain = try Certificate.loadChain(pemFile: config.pki.certificate)
            tls = try TLSContext.publicServer(chain: [chain[0], ca.certificate], key: PrivateKey(pemFile: config.pki.key))
            guard try PeerIdentity.from(chain[0]).role == .controller else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "\(config.pki.certificate) is not a controller identity; issue one with 'upkeep pki issue controller'")
            }
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "the join server needs the CA (with ca.key beside pki.ca) and the controller's certificate: \(error)")
        }
        do {
            try pki.prepareCopies(for: .agent)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "the join server keeps a copy of each certificate it issues in \(pki.directory(for: .agent)): \(error)")
        }
        var logger = Logger(label: "upkeep.join")
        logger.logLevel = .info
        let service = JoinService(ca: ca, pki: pki, store: try openStateStore(config), certificateDays: config.join.certificateDays, logger: logger)
        let server: HTTPServer
        do {
            // Blocking: each join signs and writes the state database.
            server = try await HTTPServer.start(host: host, port: port, configuration: Self.serverConfiguration, tls: tls, logger: logger,
                                                responder: .blocking { service.answer($0) })
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot listen on \(address): \(error)")
        }
        FileHandle.standardOutput.write(Data("join server listening on \(host.contains(":") ? "[\(host)]" : host):\(server.port), CA \(CAHash(of: ca.certificate))\n".utf8))
        _ = await Signals.wait(for: [SIGTERM, SIGINT])
        await server.close()
    }

    /// The HOST:PORT nodes dial: `join.advertise`, else `join.listen` unless it is a wildcard,
    /// else this machine's host name with the listen port.
    static func advertised(_ join: ControllerConfig.Join) -> String {
        if let advertise = join.advertise { return advertise }
        guard let colon = join.listen.lastIndex(of: ":") else { return join.listen }
        let host = join.listen[..<colon]
        guard ["0.0.0.0", "[::]", "::", ""].contains(host) else { return join.listen }
        return ProcessInfo.processInfo.hostName + join.listen[colon...]
    }
}
