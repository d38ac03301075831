import UpkeepCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// k3s's images directory on a node without a registry (https://docs.k3s.io/installation/airgap,
/// "Manually deploy images"): k3s imports the release's `k3s-airgap-images-<arch>.tar(.zst|.gz)`
/// from `<k3s data dir>/agent/images/` when it starts, and a version whose images are missing
/// cannot start its pods. An install places the new version's tarball there before the binary;
/// the tarballs it replaces are kept in `<dataDir>/previous-images/` with the previous binary and
/// put back with it.
///
/// Every file goes in under a temporary name, fsynced, and is renamed over its final name; the
/// directory is fsynced. A file is a hard link where possible (the staged tarball, the kept ones:
/// hundreds of MB each), a copy otherwise.
public struct AirgapImages: Sendable {
    public static let prefix = "k3s-airgap-images-"

    /// `<k3s data dir>/agent/images`.
    public let directory: String
    /// `<dataDir>/previous-images`.
    public let keptDirectory: String

    public init(k3sDataDir: String, dataDir: String) {
        directory = "\(k3sDataDir)/agent/images"
        keptDirectory = "\(dataDir)/previous-images"
    }

    /// Whether k3s on this node imports its images from the directory: `configured` when
    /// agent.yaml says so, else whether the directory holds a `k3s-airgap-images-*` file.
    public func inUse(configured: Bool?) -> Bool {
        configured ?? !tarballs(in: directory).isEmpty
    }

    /// The `k3s-airgap-images-*` files of `directory`, by name.
    func tarballs(in directory: String) -> [String] {
        ((try? FileSystem.list(directory)) ?? []).filter { $0.hasPrefix(Self.prefix) }
    }

    /// Replaces what was kept with the directory's tarballs now; the directory is not changed.
    public func keep() throws(FileSystemError) {
        try FileSystem.makeDirectories(keptDirectory)
        for name in try FileSystem.list(keptDirectory) { try FileSystem.removeIfPresent("\(keptDirectory)/\(name)") }
        for name in tarballs(in: directory) {
            try Self.put("\(directory)/\(name)", as: "\(keptDirectory)/\(name)")
        }
        try FileSystem.fsyncDirectory(keptDirectory)
    }

    /// Puts the staged tarball at `source` into the directory as `fileName`, then removes the
    /// directory's other tarballs (they are kept: `keep` ran first).
    public func place(_ source: String, as fileName: String) throws(FileSystemError) {
        try FileSystem.makeDirectories(directory, mode: 0o755)
        try Self.put(source, as: "\(directory)/\(fileName)")
        for name in tarballs(in: directory) where name != fileName { try FileSystem.removeIfPresent("\(directory)/\(name)") }
        try FileSystem.fsyncDirectory(directory)
    }

    /// Makes the directory's tarballs the kept ones again (each put back under its name, others
    /// removed). The kept files stay, so this can run again after a crash.
    public func restore() throws(FileSystemError) {
        let kept = tarballs(in: keptDirectory)
        try FileSystem.makeDirectories(directory, mode: 0o755)
        for name in kept { try Self.put("\(keptDirectory)/\(name)", as: "\(directory)/\(name)") }
        for name in tarballs(in: directory) where !kept.contains(name) { try FileSystem.removeIfPresent("\(directory)/\(name)") }
        try FileSystem.fsyncDirectory(directory)
    }

    /// `source` under `target`, atomically: a link (or a fsynced copy) under a temporary name
    /// beside `target`, renamed over it. Readable by all (k3s runs as root; the tarball is public).
    static func put(_ source: String, as target: String) throws(FileSystemError) {
        let temporary = "\(PathName.directory(target))/.\(PathName.base(target)).upkeep-new"
        try FileSystem.removeIfPresent(temporary)
        if link(source, temporary) != 0 {
            try FileSystem.copy(source, to: temporary, mode: 0o644)
        }
        guard rename(temporary, target) == 0 else {
            let failure = FileSystemError("rename", target)
            unlink(temporary)
            throw failure
        }
        // rename(2) does nothing when both names are links to one file (a restore run again).
        unlink(temporary)
    }
}
