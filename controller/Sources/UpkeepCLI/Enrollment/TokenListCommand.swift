import ArgumentParser
import UpkeepCore
import UpkeepPOSIX
import UpkeepStore

/// `upkeep token list`: every token by id (never its secret), its limits and its state.
struct TokenListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List bootstrap tokens (ids only; secrets are never stored).")

    @OptionGroup var configOption: ConfigOption

    func run() throws {
        let store = try openStateStore(try configOption.load())
        let tokens: [JoinTokenRecord]
        do { tokens = try store.joinTokens() } catch { throw CommandFailure(code: RolloutExitCode.state, message: error.description) }
        guard !tokens.isEmpty else {
            print("no tokens; create one with 'upkeep token create'")
            return
        }
        let now = Instant.wallClockNow()
        print("ID      STATE     USES  NODE          EXPIRES")
        for token in tokens {
            let uses = "\(token.uses)/\(token.usesMax)"
            print("\(token.id)  \(token.state(now: now).padding(8))  \(uses.padding(4))  \((token.node ?? "(any)").padding(12))  \(token.expiresAt.utcDescription)")
        }
    }
}

extension String {
    /// The text left-aligned in at least `width` columns.
    fileprivate func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
