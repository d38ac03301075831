import UpkeepHTTP
import UpkeepUpdates

/// `upkeep check`'s exit codes (documented in docs/check.md and `upkeep check --help`).
enum CheckExitCode {
    static let upToDate: Int32 = 0
    static let failed: Int32 = 1
    static let usage: Int32 = 2
    static let configuration: Int32 = 3
    static let cluster: Int32 = 4
    static let releaseSource: Int32 = 5
    static let malformedAnswer: Int32 = 6
    static let history: Int32 = 7
    static let updatesAvailable: Int32 = 10

    /// The code for an error that stopped a check.
    static func code(for error: any Error) -> Int32 {
        switch error {
        case is CheckConfigurationError, is TokenError: configuration
        case is ClusterReadError: cluster
        case is ReleaseSourceError, is HTTPClientError: releaseSource
        case is AnswerError: malformedAnswer
        case is CheckHistoryError: history
        default: failed
        }
    }
}

/// A setting `upkeep check` cannot use: say which and what to do.
struct CheckConfigurationError: Error, CustomStringConvertible {
    var description: String
}
