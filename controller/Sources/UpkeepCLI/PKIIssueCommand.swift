import ArgumentParser
import Foundation
import UpkeepPKI

/// `upkeep pki issue`: agent and controller identities.
struct PKIIssue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue an agent, controller or operator certificate signed by the cluster CA.",
        subcommands: [PKIIssueAgent.self, PKIIssueController.self, PKIIssueOperator.self]
    )
}

/// `issue agent`, `issue controller` and `issue operator`: one role's certificate for the name
/// the command's argument gives; each declares only its name, help and argument.
protocol PKIIssueRoleCommand: ParsableCommand {
    static var role: PeerRole { get }
    /// The identity's name: the node, the controller's or the operator's name.
    var name: String { get }
    var options: PKIIssueOptions { get }
}

extension PKIIssueRoleCommand {
    func validate() throws {
        _ = try identityArgument(Self.role, name)
    }

    func run() throws {
        try options.issue(identityArgument(Self.role, name))
    }
}

/// Options shared by `issue agent`, `issue controller` and `issue operator`.
struct PKIIssueOptions: ParsableArguments {
    @OptionGroup var write: PKIWriteOptions

    @Option(name: .customLong("dns"), help: ArgumentHelp("An extra DNS name for the certificate (repeatable).", valueName: "NAME"))
    var dnsNames: [String] = []

    @Option(name: .customLong("ip"), help: ArgumentHelp("An extra IP address for the certificate (repeatable).", valueName: "ADDRESS"))
    var ipAddresses: [String] = []

    @Option(name: .long, help: ArgumentHelp("Key algorithm (default: the CA's).", valueName: "ecdsa-p256|ed25519"),
            transform: parseKeyType)
    var keyType: KeyType?

    func validate() throws {
        do {
            try CertificateAuthority.checkAlternativeNames(dnsNames: dnsNames, ipAddresses: ipAddresses)
        } catch let error as PKIError {
            throw ValidationError(error.description)
        }
    }

    /// Issues `identity` into the directory and prints where it went.
    func issue(_ identity: PeerIdentity) throws {
        let issued = try write.directory.issue(
            identity, keyType: keyType,
            validity: PKIDirectory.validity(days: write.days ?? PKIDirectory.defaultIdentityDays),
            dnsNames: dnsNames, ipAddresses: ipAddresses, force: write.force)
        print("Issued \(identity.uri), valid until \(issued.certificate.notAfter.formatted(.iso8601))")
        printWritten(certificate: issued.certificatePath, key: issued.keyPath)
    }
}

/// Turns a name argument into an identity, or a usage error.
func identityArgument(_ role: PeerRole, _ name: String) throws -> PeerIdentity {
    do {
        return try PeerIdentity(role: role, name: name)
    } catch let error as PeerIdentityError {
        throw ValidationError(error.description)
    }
}
