/// An answer from a release source (GitHub, the channel server, a mirror) that is not what
/// Upkeep expects: not JSON, the wrong shape, a tag that is not a version, a bad asset name.
///
/// `location` names the offending field as a JSON path (`[3].assets[1].name`). Nothing from a
/// malformed answer is used: the whole answer is refused.
public struct AnswerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The URL or file the answer came from.
    public var source: String
    /// JSON path of the offending value; empty for the answer as a whole.
    public var location: String
    public var problem: String

    public init(source: String, location: String = "", problem: String) {
        self.source = source
        self.location = location
        self.problem = problem
    }

    public var description: String {
        let at = location.isEmpty ? "" : " at \(location)"
        return "unusable answer from \(source)\(at): \(problem); if this is a mirror, regenerate it (see docs/check.md), otherwise retry later"
    }
}

/// A release source that could not be asked: network, TLS, rate limit, HTTP status, missing file.
public struct ReleaseSourceError: Error, Equatable, Sendable, CustomStringConvertible {
    public var source: String
    public var problem: String

    public init(source: String, problem: String) {
        self.source = source
        self.problem = problem
    }

    public var description: String { "cannot read releases from \(source): \(problem)" }
}
