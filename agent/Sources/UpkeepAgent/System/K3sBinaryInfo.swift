import UpkeepAgentCore
import UpkeepCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads what the live k3s binary is: its digest and the version it reports. The digest is
/// cached by inode, size and modification time, so status calls do not rehash a 70 MB file.
public actor K3sBinaryInfo {
    public let path: String
    private let versionTimeoutSeconds: Double
    private var cache: (key: FileIdentity, binary: LiveBinary)?

    public init(path: String, versionTimeoutSeconds: Double) {
        self.path = path
        self.versionTimeoutSeconds = versionTimeoutSeconds
    }

    /// The live binary, or nil when it is missing or unreadable.
    public func live() async -> LiveBinary? {
        guard let key = FileSystem.identity(path) else { return nil }
        if let cache, cache.key == key { return cache.binary }
        guard let sha = try? FileSystem.sha256(ofFile: path) else { return nil }
        let version = try? await Self.version(of: path, timeoutSeconds: versionTimeoutSeconds)
        let binary = LiveBinary(sha256: sha, k3sVersion: version)
        cache = (key, binary)
        return binary
    }

    /// The identity of the file whose digest is `sha256`, when that is the live binary last read.
    public func identity(ofDigest sha256: String) -> FileIdentity? {
        cache.flatMap { $0.binary.sha256 == sha256 ? $0.key : nil }
    }

    /// Runs `<path> --version` and returns the version word of its first line.
    public static func version(of path: String, timeoutSeconds: Double) async throws(AgentFailure) -> String {
        let outcome = try await ProcessRunner.run(path, ["--version"], timeoutSeconds: timeoutSeconds)
        guard outcome.succeeded else {
            throw AgentFailure(.io, "\(path) --version failed (exit \(outcome.exitCode.map(String.init) ?? "by signal")): \(outcome.summary)")
        }
        do {
            return try K3sVersionOutput(parsing: outcome.output).version.description
        } catch {
            throw AgentFailure(.io, "\(path) --version printed no k3s version (\(error)): \(outcome.output.prefix(200))")
        }
    }
}
