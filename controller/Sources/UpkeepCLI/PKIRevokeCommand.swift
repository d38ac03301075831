import ArgumentParser
import Foundation
import UpkeepPKI

/// `upkeep pki revoke NODE`: puts the node's current agent certificate on the deny list the
/// controller checks in every TLS handshake, so a stolen or retired node key opens nothing.
struct PKIRevoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Make the controller refuse a node's current agent certificate (a deny list checked in the TLS handshake).",
        discussion: "Adds the SHA-256 fingerprint of DIR/agents/NODE.crt (or --certificate FILE) to DIR/revoked.txt (pki.revoked in "
            + "upkeep.yaml). A certificate issued to the node afterwards (`upkeep pki issue agent NODE --force`) is accepted. See docs/pki.md."
    )

    @Argument(help: ArgumentHelp("The node whose agent certificate is revoked.", valueName: "NODE"))
    var node: String

    @Option(name: .long, help: ArgumentHelp("The PKI directory (default: the directory of pki.ca in upkeep.yaml).", valueName: "DIR"))
    var dir: String?

    @Option(name: .long, help: ArgumentHelp("Revoke this certificate file instead of DIR/agents/NODE.crt.", valueName: "FILE"))
    var certificate: String?

    @OptionGroup var configOption: ConfigOption

    func validate() throws {
        do { _ = try PeerIdentity(role: .agent, name: node) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        let config = try configOption.load()
        let directory = dir ?? (config.pki.ca as NSString).deletingLastPathComponent
        let listFile = dir.map { "\($0)/revoked.txt" } ?? config.pki.revokedFile
        let file = try certificate ?? PKIDirectory(path: directory).certificatePath(for: PeerIdentity(role: .agent, name: node))
        let revoked: Certificate
        do {
            guard let first = try Certificate.loadChain(pemFile: file).first else { throw PKIError.noCertificate(source: file) }
            revoked = first
        } catch {
            throw CommandFailure(code: 1, message: "\(error); name the node's certificate with --certificate FILE or the PKI directory with --dir")
        }
        let expected = try PeerIdentity(role: .agent, name: node)
        guard let identity = try? PeerIdentity.from(revoked), identity == expected else {
            throw CommandFailure(code: 1, message: "\(file) is not the agent certificate of \(node) (\(revoked.subject)); name the right one with --certificate")
        }
        var list = try CertificateDenyList.load(path: listFile)
        let at = Date().formatted(.iso8601)
        guard list.add(revoked, identity: identity.uri, revokedAt: at) else {
            print("\(identity.uri) (SHA-256 \(revoked.sha256Fingerprint)) is already revoked in \(listFile)")
            return
        }
        try writeReplacing(listFile, with: list.text)
        print("Revoked \(identity.uri) (SHA-256 \(revoked.sha256Fingerprint)) in \(listFile).")
        print("The controller refuses this certificate from its next start of a command; issue the node a new one with "
              + "`upkeep pki issue agent \(node) --force` to let it back.")
    }
}
