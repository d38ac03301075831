import ArgumentParser
import Foundation
import UpkeepPKI

/// `upkeep pki init --dir DIR`: creates the cluster CA.
struct PKIInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the cluster CA key and certificate in DIR."
    )

    @OptionGroup var options: PKIWriteOptions

    @Option(name: .long, help: ArgumentHelp("Key algorithm (default: ecdsa-p256).", valueName: "ecdsa-p256|ed25519"),
            transform: parseKeyType)
    var keyType: KeyType = .ecdsaP256

    func run() throws {
        let directory = options.directory
        let authority = try directory.initialize(
            keyType: keyType,
            validity: PKIDirectory.validity(days: options.days ?? PKIDirectory.defaultCADays),
            force: options.force)
        print("Created CA \"\(PKIDirectory.caCommonName)\" (\(keyType.rawValue)), valid until \(authority.certificate.notAfter.formatted(.iso8601))")
        printWritten(certificate: directory.caCertificatePath, key: directory.caKeyPath)
    }
}
