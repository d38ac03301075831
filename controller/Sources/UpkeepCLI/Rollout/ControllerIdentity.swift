import Foundation
import UpkeepRuntime

/// This controller's stable id, as the cluster Lease names its holder: the host name and eight
/// random hex digits, made once and kept in `<stateDir>/controller-id`. One state directory is
/// one controller: two processes of it are kept apart by the directory's own lease, two state
/// directories (on one machine or two) by the Lease.
///
/// The file is made whole or not at all (written beside it, then linked into place, which fails
/// when another process made it first; that one's id is used), and never rewritten.
enum ControllerIdentity {
    static let fileName = "controller-id"

    static func load(stateDirectory: String) throws -> String {
        let path = "\(stateDirectory)/\(fileName)"
        if let existing = try read(path) { return existing }
        var random = SystemRandomNumberGenerator()
        let suffix = String(random.next() as UInt32, radix: 16)
        let host = RuntimeConfiguration.hostName().prefix { $0 != "." }.filter { $0.isLetter || $0.isNumber || $0 == "-" }.prefix(40)
        let id = "\(host.isEmpty ? "upkeep" : String(host))-\(String(repeating: "0", count: 8 - suffix.count) + suffix)"
        let partial = "\(path).\(getpid()).partial"
        defer { unlink(partial) }
        do {
            try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: partial))
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: "cannot write \(path): \(error); check the state directory's permissions")
        }
        if link(partial, path) != 0 && errno != EEXIST {
            throw CommandFailure(code: RolloutExitCode.state, message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        guard let made = try read(path) else {
            throw CommandFailure(code: RolloutExitCode.state, message: "\(path) is empty; remove it so a new id is made")
        }
        return made
    }

    /// The id already made for `stateDirectory`, nil when none was (this controller never took
    /// the Lease); makes nothing, for the commands that only read.
    static func existing(stateDirectory: String) throws -> String? {
        try read("\(stateDirectory)/\(fileName)")
    }

    /// The id in `path`, nil when there is none; an id with spaces or over 64 characters is refused.
    private static func read(_ path: String) throws -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let id = String(decoding: data.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !id.isEmpty else { return nil }
        guard id.count <= 64, !id.contains(where: \.isWhitespace) else {
            throw CommandFailure(code: RolloutExitCode.state,
                                 message: "\(path) does not hold a controller id (one word of at most 64 characters); remove it so a new one is made")
        }
        return id
    }
}
