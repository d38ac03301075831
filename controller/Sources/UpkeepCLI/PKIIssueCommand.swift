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

/// Options shared by `issue agent` and `issue controller`.
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
