#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore

/// An exclusive `flock` on `<dataDir>/agent.lock`, held for the life of the process, so that two
/// agents (or an agent and an operator's one-shot command) never share a journal.
public final class DataDirLock: Sendable {
    private let descriptor: Int32

    public init(dataDir: String) throws(AgentFailure) {
        let path = "\(dataDir)/agent.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .io(FileSystemError("open", path)) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw AgentFailure(.conflict, "another upkeep-agent holds \(path); stop it first (systemctl stop upkeep-agent)")
        }
        self.descriptor = descriptor
    }

    /// Lets another agent take the data directory (this process stops using it).
    public func release() { flock(descriptor, LOCK_UN) }

    deinit { close(descriptor) }
}
