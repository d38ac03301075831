import ArgumentParser
import UpkeepPKI

/// Options every writing `pki` subcommand takes.
struct PKIWriteOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The PKI directory.", valueName: "DIR"))
    var dir: String

    @Option(name: .long, help: ArgumentHelp("Days the certificate stays valid (1 to \(PKIWriteOptions.daysMax)).", valueName: "N"))
    var days: Int?

    @Flag(name: .long, help: "Replace existing keys and certificates.")
    var force = false

    static let daysMax = 36_500

    func validate() throws {
        if let days, !(1...PKIWriteOptions.daysMax).contains(days) {
            throw ValidationError("--days must be between 1 and \(PKIWriteOptions.daysMax), not \(days)")
        }
    }

    var directory: PKIDirectory { PKIDirectory(path: dir) }
}

/// Parses --key-type values.
func parseKeyType(_ text: String) throws -> KeyType {
    guard let type = KeyType(rawValue: text) else {
        throw ValidationError("use one of: \(KeyType.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return type
}

/// Prints where a key and certificate were written.
func printWritten(certificate: String, key: String) {
    print("  \(certificate)")
    print("  \(key) (secret, mode 0600)")
}
