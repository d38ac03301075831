import UpkeepCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The datastore plaintext a node holds for the controller: backups this agent took (`backups/`,
/// until they were downloaded) and backups it received for a restore (`restore/`, until `restore`
/// used them). Both hold the cluster's data and, for SQLite, its token, which lets anyone who
/// reads it join the cluster (https://docs.k3s.io/cli/token). They live as 0600 files in 0700
/// directories, and not for long: whatever is left is removed `retentionMs` after it was written,
/// swept at start and every `sweepIntervalMs` while the agent runs.
public struct PlaintextRetention: Sendable {
    public static let retentionMs: Int64 = 24 * 3600 * 1000
    public static let sweepIntervalMs: Int64 = 3600 * 1000

    public let backupDir: String
    public let restoreDir: String

    public init(dataDir: String) {
        backupDir = "\(dataDir)/backups"
        restoreDir = "\(dataDir)/restore"
    }

    public var directories: [String] { [backupDir, restoreDir] }

    /// Creates `directory` with mode 0700, or takes any other access from an existing one.
    public static func secure(_ directory: String) throws(FileSystemError) {
        try FileSystem.makeDirectories(directory, mode: 0o700)
        let status = try FileSystem.fileStatus(directory)
        if status.st_mode & 0o7777 != 0o700 {
            guard chmod(directory, 0o700) == 0 else { throw FileSystemError("chmod", directory) }
        }
    }

    /// Removes the files written `retentionMs` or longer before `now` and, with `leftovers`, the
    /// temporary files (`.`-names) of a backup or upload an earlier run left unfinished. Returns the
    /// removed paths; a file that cannot be removed is named in `failures`.
    public func sweep(nowUnixMs: Int64, leftovers: Bool) -> (removed: [String], failures: [String]) {
        var removed: [String] = []
        var failures: [String] = []
        for directory in directories where FileSystem.isDirectory(directory) {
            do {
                try Self.secure(directory)
            } catch {
                failures.append("\(error)")
            }
            for name in (try? FileSystem.list(directory)) ?? [] {
                let path = "\(directory)/\(name)"
                guard let status = try? FileSystem.fileStatus(path), status.st_mode & S_IFMT == S_IFREG else { continue }
                let writtenMs = Int64(status.st_mtim.tv_sec) * 1000 + Int64(status.st_mtim.tv_nsec) / 1_000_000
                guard (leftovers && name.hasPrefix(".")) || nowUnixMs - writtenMs >= Self.retentionMs else { continue }
                do {
                    try FileSystem.removeIfPresent(path)
                    removed.append(path)
                } catch {
                    failures.append("\(error)")
                }
            }
        }
        return (removed, failures)
    }
}
