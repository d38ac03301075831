import ArgumentParser
import Foundation
import UpkeepPKI

/// `upkeep pki show FILE`: what a certificate says, for people.
struct PKIShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a certificate's subject, issuer, role, node or name, SANs, validity, serial and fingerprint."
    )

    @Argument(help: ArgumentHelp("A PEM certificate file (the first certificate is shown).", valueName: "FILE"))
    var file: String

    func run() throws {
        let chain = try Certificate.loadChain(pemFile: file)
        print("File:       \(file)")
        print(CertificateSummary(chain[0], now: Date()).text, terminator: "")
        if chain.count > 1 {
            print("(\(chain.count - 1) more certificate\(chain.count == 2 ? "" : "s") in the file)")
        }
    }
}
