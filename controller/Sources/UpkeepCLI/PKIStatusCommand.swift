import ArgumentParser
import Foundation
import UpkeepPKI

/// `upkeep pki status`: every identity the controller can see, with its expiry and the point
/// at which it is due for renewal, soonest expiry first.
struct PKIStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "List every certificate (the CA, controllers, agents) with its expiry and renewal point, soonest first.",
        discussion: "Reads DIR, or the directory of pki.ca in upkeep.yaml and the files its pki section names. See docs/pki.md."
    )

    @Option(name: .long, help: ArgumentHelp("The PKI directory (default: the directory of pki.ca in upkeep.yaml).", valueName: "DIR"))
    var dir: String?

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output format: table or json.", valueName: "FORMAT"))
    var output: OutputFormat = .table

    @OptionGroup var configOption: ConfigOption

    func run() throws {
        let config = try configOption.load()
        var inventory = try PKIInventory.read(directory: dir, config: config)
        inventory.entries.sort { ($0.notAfter ?? .distantPast, $0.identity) < ($1.notAfter ?? .distantPast, $1.identity) }
        switch output {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(inventory.entries), as: UTF8.self))
        case .table:
            guard !inventory.entries.isEmpty else {
                throw CommandFailure(code: 1, message: "no certificates in \(dir ?? (config.pki.ca as NSString).deletingLastPathComponent); "
                                     + "pass --dir DIR or set pki in upkeep.yaml (docs/pki.md)")
            }
            print(Self.table(inventory, now: Date()), terminator: "")
        }
    }

    static func table(_ inventory: PKIInventory, now: Date) -> String {
        func day(_ date: Date?) -> String { date.map { String($0.formatted(.iso8601).prefix(10)) } ?? "-" }
        let rows = [["IDENTITY", "EXPIRES", "VALIDITY", "RENEW AFTER", "FILE"]] + inventory.entries.map { entry in
            guard let notBefore = entry.notBefore, let notAfter = entry.notAfter else {
                return [entry.identity, "-", "unreadable: \(entry.problem ?? "?")", "-", entry.file]
            }
            let due = entry.renewAfter.map { now >= $0 } ?? false
            if entry.revoked { return [entry.identity, day(notAfter), "revoked", "-", entry.file] }
            return [entry.identity, day(notAfter), CertificateSummary.validity(notBefore: notBefore, notAfter: notAfter, now: now),
                    day(entry.renewAfter) + (due && now < notAfter ? " (due)" : ""), entry.file]
        }
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            (0..<4).map { row[$0].padding(toLength: widths[$0] + 2, withPad: " ", startingAt: 0) }.joined() + row[4] + "\n"
        }.joined()
    }
}
