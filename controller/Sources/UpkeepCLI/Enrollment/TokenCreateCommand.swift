import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepEnrollment
import UpkeepPKI
import UpkeepPOSIX
import UpkeepStore

/// `upkeep token create`: a new bootstrap token, stored hashed, and the command that joins a node with it.
struct TokenCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a bootstrap token and print the command that joins a node with it.",
        discussion: "The token is shown once; the state database keeps only its SHA-256. Run 'upkeep join-server' for nodes to join.")

    @OptionGroup var configOption: ConfigOption

    @Option(help: ArgumentHelp("How long the token is valid: a number and s, m, h or d.", valueName: "DURATION"))
    var ttl = "24h"

    @Option(help: "How many nodes may join with it (1…1000).")
    var uses = 1

    @Option(help: ArgumentHelp("The only node the token may enroll (default: any node).", valueName: "NAME"))
    var node: String?

    @Option(help: ArgumentHelp("HOST:PORT of the join server as nodes reach it (default: join.advertise, else join.listen).", valueName: "HOST:PORT"))
    var controller: String?

    func validate() throws {
        guard TokenCreateCommand.seconds(ttl) != nil else { throw ValidationError("--ttl \(ttl): write a number and s, m, h or d, e.g. 24h (at most 365d)") }
        guard (1...1000).contains(uses) else { throw ValidationError("--uses must be 1…1000") }
        if let node {
            do { _ = try PeerIdentity(role: .agent, name: node) } catch { throw ValidationError("--node: \(error)") }
        }
    }

    func run() throws {
        let config = try configOption.load()
        let ca: Certificate
        do {
            ca = try Certificate.loadChain(pemFile: config.pki.ca)[0]
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot read the cluster CA (pki.ca): \(error); create it with 'upkeep pki init'")
        }
        let store = try openStateStore(config)
        let now = Instant.wallClockNow()
        let token = BootstrapToken.generate()
        let record = JoinTokenRecord(id: token.id, secretSHA256: token.secretSHA256, node: node, usesMax: uses, createdAt: now,
                                     expiresAt: now.adding(seconds: TokenCreateCommand.seconds(ttl) ?? 86_400))
        do { try store.createJoinToken(record) } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        let address = controller ?? JoinServerCommand.advertised(config.join)
        print("token \(token.text)")
        print("  id \(token.id), expires \(record.expiresAt.utcDescription), \(uses) use\(uses == 1 ? "" : "s"), \(node.map { "node \($0) only" } ?? "any node")")
        print("join a node (as root on it):")
        print("  upkeep-agent join --controller \(address) --token \(token.text) --ca-hash \(CAHash(of: ca))")
    }

    /// "90s", "15m", "24h", "7d" in seconds, at most 365 days; nil for anything else.
    static func seconds(_ text: String) -> Int? {
        guard let unit = text.last, let count = Int(text.dropLast()), count > 0 else { return nil }
        let factor: Int
        switch unit {
        case "s": factor = 1
        case "m": factor = 60
        case "h": factor = 3600
        case "d": factor = 86_400
        default: return nil
        }
        let seconds = count.multipliedReportingOverflow(by: factor)
        return !seconds.overflow && seconds.partialValue <= 365 * 86_400 ? seconds.partialValue : nil
    }
}
