#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// sd_notify without libsystemd: datagrams to the unix socket named by `NOTIFY_SOCKET` (a path,
/// or `@name` for the abstract namespace). Does nothing when the variable is absent (not started
/// by systemd with Type=notify).
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    /// From `WATCHDOG_USEC` (when `WATCHDOG_PID` is absent or ours): how often systemd expects
    /// `WATCHDOG=1`. The agent sends it at half this interval.
    public let watchdogIntervalUs: UInt64?

    public init(environment: [String: String]) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        watchdogIntervalUs = forUs ? environment["WATCHDOG_USEC"].flatMap(UInt64.init).flatMap { $0 > 0 ? $0 : nil } : nil
    }

    public static func fromProcessEnvironment() -> SystemdNotifier {
        var environment: [String: String] = [:]
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        return SystemdNotifier(environment: environment)
    }

    public var isActive: Bool { socketPath != nil }

    /// Sends one state message such as `READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`.
    public func notify(_ state: String) throws(FileSystemError) {
        guard let socketPath else { return }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw FileSystemError("socket", socketPath) }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { throw FileSystemError("connect", socketPath, code: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        // An abstract name's length counts exactly; a path is NUL-terminated.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
        guard sent == message.count else { throw FileSystemError("sendto", socketPath) }
    }
}
