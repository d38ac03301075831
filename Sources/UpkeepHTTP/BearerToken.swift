#if canImport(Glibc)
import Glibc
#endif
import UpkeepPOSIX

/// An API token (GitHub's `GITHUB_TOKEN`), read from the environment or from a file that only
/// its owner can read. Its description is redacted: printing or logging it never shows it.
public struct BearerToken: Sendable, Equatable, CustomStringConvertible {
    let value: String
    /// Where it came from (`environment variable GITHUB_TOKEN`, `file /etc/upkeep/github-token`).
    public let source: String

    public init(value: String, source: String) throws(TokenError) {
        let trimmed = String(value.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
        guard !trimmed.isEmpty else { throw .empty(source) }
        // A token goes into a header: refuse anything that could split or bend it.
        guard trimmed.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .invalidCharacters(source) }
        self.value = trimmed
        self.source = source
    }

    public var description: String { "token from \(source) (redacted)" }

    /// The `Authorization` header value.
    public var authorizationHeader: String { "Bearer \(value)" }

    /// The secret itself, for a header of another name (`X-Gotify-Key`) or a MAC key; never print it.
    public var secretText: String { value }

    /// The token from `file` when given (which must be a regular file without group or other
    /// permissions), else from `environment[variable]` (this process's environment when nil)
    /// when set and non-empty, else nil.
    public static func load(file: String?, environment: [String: String]? = nil,
                            variable: String = "GITHUB_TOKEN") throws(TokenError) -> BearerToken?
    {
        if let file {
            var info = stat()
            guard stat(file, &info) == 0 else { throw .unreadable(file, String(cString: strerror(errno))) }
            guard info.st_mode & S_IFMT == S_IFREG else { throw .unreadable(file, "not a regular file") }
            let permissions = info.st_mode & 0o777
            guard permissions & 0o077 == 0 else { throw .tooOpen(file, mode: permissions) }
            let data: [UInt8]
            do {
                data = try BoundedRead.bytes(file, bytesMax: 4096)
            } catch .tooLarge {
                throw .unreadable(file, "larger than 4096 bytes; is it the right file?")
            } catch {
                throw .unreadable(file, "cannot read it")
            }
            return try BearerToken(value: String(decoding: data, as: UTF8.self), source: "file \(file)")
        }
        let value = environment.map { $0[variable] } ?? getenv(variable).map { String(cString: $0) }
        guard let value, !value.isEmpty else { return nil }
        return try BearerToken(value: value, source: "environment variable \(variable)")
    }
}

/// Why a token could not be used. Never contains the token.
public enum TokenError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty(String)
    case invalidCharacters(String)
    case unreadable(String, String)
    case tooOpen(String, mode: mode_t)

    public var description: String {
        switch self {
        case let .empty(source): "the token in \(source) is empty"
        case let .invalidCharacters(source): "the token in \(source) contains spaces or control characters"
        case let .unreadable(path, reason): "cannot read the token file \(path): \(reason)"
        case let .tooOpen(path, mode):
            "the token file \(path) has mode 0\(String(mode, radix: 8)); other users could read it: run chmod 600 \(path)"
        }
    }
}
