import ArgumentParser
import Foundation
import UpkeepFleet
import UpkeepPKI

/// `upkeep pki renew`: renews agent certificates over each agent's own mutual-TLS connection
/// (docs/pki.md, "Renewal"). Each agent makes its new key itself; the CA in DIR signs it.
struct PKIRenew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renew",
        abstract: "Renew agent certificates over their mTLS connection: every one past two thirds of its lifetime, or the nodes named.",
        discussion: "Needs the CA key (DIR/ca.key) on this machine and the cluster's agents reachable, as for `upkeep agents`. "
            + "Writes each new certificate to DIR/agents/NODE.crt and removes DIR/agents/NODE.key when it no longer matches: "
            + "the new key stays on the node. Run it from a daily timer. See docs/pki.md."
    )

    @Argument(help: ArgumentHelp("Renew these nodes now, due or not (default: every agent certificate in DIR that is due).", valueName: "NODE"))
    var nodes: [String] = []

    @Option(name: .long, help: ArgumentHelp("The PKI directory (default: the directory of pki.ca in upkeep.yaml).", valueName: "DIR"))
    var dir: String?

    @Option(name: .long, help: ArgumentHelp("Days the new certificates stay valid (1 to \(PKIWriteOptions.daysMax); default \(PKIDirectory.defaultIdentityDays)).",
                                            valueName: "N"))
    var days = PKIDirectory.defaultIdentityDays

    @OptionGroup var configOption: ConfigOption

    func validate() throws {
        guard (1...PKIWriteOptions.daysMax).contains(days) else { throw ValidationError("--days must be between 1 and \(PKIWriteOptions.daysMax), not \(days)") }
        for node in nodes {
            do { _ = try PeerIdentity(role: .agent, name: node) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() async throws {
        let config = try configOption.load()
        guard !config.notifications.isEmpty else { return try await renew(config) }
        // The daily expiry check: certificates close to their end are told of (certificate.expiring).
        let store = try openStateStore(config)
        try await NotificationRun.with(config, store: store) {
            CertificateExpiryNotice.check(config: config, directory: dir, store: store)
            try await renew(config)
        }
    }

    private func renew(_ config: ControllerConfig) async throws {
        let directory = PKIDirectory(path: dir ?? (config.pki.ca as NSString).deletingLastPathComponent)
        let authority: CertificateAuthority
        do { authority = try directory.loadCA() } catch {
            throw CommandFailure(code: 1, message: "\(error); renewal signs with the cluster CA, so it runs where DIR/ca.key is")
        }
        let now = Date()
        let chosen = nodes.isEmpty ? try Self.dueNodes(in: directory, config: config, now: now) : nodes
        guard !chosen.isEmpty else {
            print("No agent certificate in \(directory.path)/agents is due for renewal.")
            return
        }
        let validity = PKIDirectory.validity(days: days, now: now)
        guard validity.notAfter <= authority.certificate.notAfter else {
            throw CommandFailure(code: 1, message: "a certificate of \(days) days would outlive the CA (it expires \(authority.certificate.notAfter.formatted(.iso8601))); "
                                 + "pass a smaller --days, or rotate the CA (docs/pki.md, \"Rotation\")")
        }
        var failed: [String] = []
        try await ClusterSession.with(config) { session in
            let fleet = try await session.fleet(for: try await session.read())
            for node in chosen {
                do {
                    let certificate = try await CertificateRenewal.renew(node: node, fleet: fleet, authority: authority, validity: validity)
                    try directory.stageCopy(of: certificate, for: try PeerIdentity(role: .agent, name: node)).publish()
                    print("Renewed upkeep://agent/\(node): valid until \(certificate.notAfter.formatted(.iso8601)), SHA-256 \(certificate.sha256Fingerprint)")
                } catch {
                    failed.append(node)
                    fflush(nil)  // every stream: what went to stdout before goes out first
                    FileHandle.standardError.write(Data("Error: renewing \(node): \(error)\n".utf8))
                }
            }
        }
        if !failed.isEmpty {
            throw CommandFailure(code: RolloutExitCode.refused, message: "\(failed.count) of \(chosen.count) renewals failed: \(failed.joined(separator: ", "))")
        }
    }

    /// The nodes whose agent certificate in DIR has passed two thirds of its lifetime and is
    /// neither revoked nor expired (an expired one cannot connect: reissue it).
    static func dueNodes(in directory: PKIDirectory, config: ControllerConfig, now: Date) throws -> [String] {
        try PKIInventory.read(directory: directory.path, config: config).entries.compactMap { entry in
            guard !entry.revoked, let renewAfter = entry.renewAfter, let notAfter = entry.notAfter, renewAfter <= now, now < notAfter,
                  let identity = PeerIdentity(uri: entry.identity), identity.role == .agent else { return nil }
            return identity.name
        }
    }
}
