import ArgumentParser
import UpkeepCore
import UpkeepPOSIX
import UpkeepStore

/// `upkeep token revoke ID`: the token enrolls no more nodes (those it enrolled keep their certificates).
struct TokenRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a bootstrap token; nodes it enrolled keep their certificates (see 'upkeep pki revoke').")

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "The token's id (the part before the dot), or the whole token.")
    var id: String

    func run() throws {
        let store = try openStateStore(try configOption.load())
        let tokenID = String(id.prefix { $0 != "." })
        let revoked: Bool
        do { revoked = try store.revokeJoinToken(id: tokenID, now: .wallClockNow()) } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        guard revoked else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "no token \(tokenID); 'upkeep token list' shows the ids")
        }
        print("token \(tokenID) revoked")
    }
}
