import Testing
import UpkeepAgent
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket standing in for systemd's notification socket.
private final class NotifySocket {
    let descriptor: Int32
    let name: String

    init(path: String, abstract: Bool) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        self.descriptor = descriptor
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if abstract { bytes.insert(0, at: 0) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
        guard result == 0 else {
            close(descriptor)
            throw FileSystemError("bind", path)
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        name = abstract ? "@" + path : path
    }

    deinit { close(descriptor) }

    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count >= 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }
}

@Suite struct SystemdNotifierTests {
    @Test func readyAndWatchdogReachAPathSocket() throws {
        let directory = try TemporaryDirectory()
        let socket = try NotifySocket(path: directory.file("notify"), abstract: false)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "2000000"])
        #expect(notifier.watchdogIntervalUs == 2_000_000)
        try notifier.notify("READY=1")
        try notifier.notify("WATCHDOG=1")
        #expect(socket.receive() == "READY=1")
        #expect(socket.receive() == "WATCHDOG=1")
    }

    @Test func abstractNamespaceSocketIsReached() throws {
        // Abstract names vanish with their process: the pid keeps runs apart, no random draw needed.
        let name = "upkeep-test-notify-\(getpid())"
        let socket = try NotifySocket(path: name, abstract: true)
        try SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name]).notify("READY=1\nSTATUS=serving")
        #expect(socket.receive() == "READY=1\nSTATUS=serving")
    }

    @Test func withoutNotifySocketNothingIsSentAndWatchdogForAnotherPidIsIgnored() throws {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"])
        #expect(!notifier.isActive && notifier.watchdogIntervalUs == nil)
        try notifier.notify("READY=1")
    }
}
