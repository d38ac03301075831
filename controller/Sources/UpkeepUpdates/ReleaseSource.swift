import UpkeepCore
import UpkeepHTTP

/// Where available versions come from: GitHub and the k3s channel server, or a mirror.
///
/// Every answer is validated before use; implementations throw `AnswerError` for a malformed
/// answer and `ReleaseSourceError` when the source cannot be asked.
public protocol ReleaseSource: Sendable, CustomStringConvertible {
    /// All channels the channel server lists, with their current versions.
    func channels() async throws -> [K3sChannel]
    /// The version one channel points at now.
    func channel(named name: String) async throws -> K3sVersion
    /// Releases of `component`, newest first as published. `oldestInstalled` lets a source
    /// stop paging once it has reached releases no newer than what runs already.
    func releases(of component: Component, oldestInstalled: K3sVersion?) async throws -> ReleaseList
    /// Compatibility entries the source carries (a mirror's `compatibility.json`), if any.
    func compatibilityEntries() async throws -> [CompatibilityEntry]?
    /// The rate-limit state of the last answer, when the source has one.
    var rateLimit: RateLimitStatus? { get }
}

/// The releases a source returned, and whether it stopped before the end of the list.
public struct ReleaseList: Sendable, Equatable {
    public var releases: [Release]
    public var pagesRead: Int
    /// Paging stopped at `pagesMax` with more pages left.
    public var truncated: Bool

    public init(releases: [Release], pagesRead: Int = 1, truncated: Bool = false) {
        self.releases = releases
        self.pagesRead = pagesRead
        self.truncated = truncated
    }
}
