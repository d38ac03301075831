import Dispatch
import Synchronization
import UpkeepCore
import UpkeepPOSIX
#if canImport(Glibc)
import Glibc
#endif

/// One started child process with its stdout and stderr pipes, watched by a blocking loop
/// (`watch`) on a thread the caller provides until it has ended and been reaped. It owns its
/// descriptors and closes them all when the watch ends; it keeps no thread of its own.
final class WatchedChild: Sendable {
    /// How the watch ended.
    struct Ending: Sendable {
        /// Nil only when even SIGKILL did not end the process within the schedule's bound.
        var status: WaitStatus?
        var stopReason: StopReason?
        var output: [UInt8]
        var error: [UInt8]
    }

    /// How the watch learns that the child has ended.
    enum ExitWatch: Sendable, CaseIterable {
        /// A pidfd, which polls readable at the exit; without `pidfd_open` (glibc 2.36, Linux 5.3)
        /// this falls back to `polling`. What production uses.
        case processDescriptor
        /// `waitpid(WNOHANG)` every 10 ms: the fallback, chosen directly so tests run it here too.
        case polling
    }

    let pid: pid_t
    private let outputDescriptor: Int32
    private let errorDescriptor: Int32
    /// Polls readable when the child has ended (nil when polling: then the loop looks every 10 ms).
    private let processDescriptor: Int32?
    /// `cancel()` writes a byte here to wake the loop's poll.
    private let wake: (read: Int32, write: Int32)
    private let control = Mutex(Control())

    private struct Control {
        var cancelled = false
        var finished = false
    }

    /// Starts `arguments[0]` with `environment` (see `PosixSpawn`: stdin /dev/null, no other
    /// descriptor inherited, default signal dispositions).
    static func start(_ arguments: [String], environment: [String: String],
                      exitWatch: ExitWatch) throws(PosixSpawn.Failure) -> WatchedChild {
        var opened: [Int32] = []
        do {
            let output = try PosixSpawn.pipe()
            opened += [output.read, output.write]
            let error = try PosixSpawn.pipe()
            opened += [error.read, error.write]
            let wake = try PosixSpawn.pipe()
            opened += [wake.read, wake.write]
            let pid = try PosixSpawn.spawn(arguments, environment: environment, standardOutput: .descriptor(output.write),
                                           standardError: .descriptor(error.write))
            close(output.write)
            close(error.write)
            for descriptor in [output.read, error.read, wake.read] { _ = fcntl(descriptor, F_SETFL, O_NONBLOCK) }
            return WatchedChild(pid: pid, output: output.read, error: error.read, wake: wake, exitWatch: exitWatch)
        } catch {
            for descriptor in opened { close(descriptor) }
            throw error
        }
    }

    private init(pid: pid_t, output: Int32, error: Int32, wake: (read: Int32, write: Int32), exitWatch: ExitWatch) {
        self.pid = pid
        outputDescriptor = output
        errorDescriptor = error
        processDescriptor = exitWatch == .processDescriptor ? PosixSpawn.processDescriptor(pid) : nil
        self.wake = wake
    }

    /// How this watch learns of the exit: `polling` when asked for, or when this system has no pidfd.
    var exitWatch: ExitWatch { processDescriptor == nil ? .polling : .processDescriptor }

    /// Asks the watch to stop the child (SIGTERM, then SIGKILL). Any thread, any time, once or more.
    func cancel() {
        control.withLock { control in
            guard !control.finished, !control.cancelled else { return }
            control.cancelled = true
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        }
    }

    /// Blocks until the child has ended and been reaped, reading both pipes as they fill (so a
    /// child filling one while we wait on the other cannot deadlock), stopping it at `deadline`,
    /// on `cancel()` or when a stream passes `outputBytesMax`. Every wait is bounded by the
    /// schedule. Call once.
    func watch(deadline: ContinuousClock.Instant, outputBytesMax: Int) -> Ending {
        var schedule = StopSchedule(deadline: deadline)
        var streams = [Stream(name: "stdout", descriptor: outputDescriptor), Stream(name: "stderr", descriptor: errorDescriptor)]
        var status: WaitStatus?
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        watching: while true {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid {
                status = WaitStatus(raw)
                break
            }
            if control.withLock({ $0.cancelled }) { schedule.stop(.cancelled) }
            let now = ContinuousClock.now
            let wakeAt: ContinuousClock.Instant
            switch schedule.next(now: now) {
            case .wait(let instant):
                wakeAt = instant
            case .signal(let signal, let instant):
                kill(pid, signal)
                wakeAt = instant
            case .abandon:
                break watching
            }
            var descriptors = streams.filter(\.isOpen).map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            descriptors.append(pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0))
            if let processDescriptor { descriptors.append(pollfd(fd: processDescriptor, events: Int16(POLLIN), revents: 0)) }
            let timeout = Self.milliseconds(until: wakeAt, from: now, atMost: processDescriptor == nil ? 10 : Int32.max)
            guard poll(&descriptors, nfds_t(descriptors.count), timeout) > 0 else { continue }
            for index in streams.indices where streams[index].isOpen {
                if descriptors.contains(where: { $0.fd == streams[index].descriptor && $0.revents != 0 }) {
                    streams[index].read(into: &buffer, bytesMax: outputBytesMax, untilDrained: false)
                    if streams[index].overflowed { schedule.stop(.outputTooLarge(stream: streams[index].name)) }
                }
            }
            while read(wake.read, &buffer, buffer.count) > 0 {}
        }
        // The child has ended: all it wrote is in the pipes now. Take that without waiting for
        // the pipes to close, which a program it left running may keep open.
        for index in streams.indices where streams[index].isOpen {
            streams[index].read(into: &buffer, bytesMax: outputBytesMax, untilDrained: true)
            if streams[index].overflowed { schedule.stop(.outputTooLarge(stream: streams[index].name)) }
        }
        finish(streams)
        if status == nil {
            // Stuck past SIGKILL (uninterruptible I/O): reap it whenever the kernel lets it go, so
            // it never stays a zombie, on a queue of its own (Dispatch's overcommit pool) rather
            // than one of DispatchQueue.global()'s few workers; the caller is answered already.
            let pid = self.pid
            DispatchQueue(label: "upkeep.process-reaper").async { _ = waitpid(pid, nil, 0) }
        }
        return Ending(status: status, stopReason: schedule.reason, output: streams[0].bytes, error: streams[1].bytes)
    }

    private func finish(_ streams: [Stream]) {
        for stream in streams where stream.isOpen { close(stream.descriptor) }
        if let processDescriptor { close(processDescriptor) }
        control.withLock { control in
            control.finished = true
            close(wake.read)
            close(wake.write)
        }
    }

    /// Whole milliseconds from `now` to `instant`, rounded up (poll must not wake early and spin), within 0...atMost.
    private static func milliseconds(until instant: ContinuousClock.Instant, from now: ContinuousClock.Instant, atMost: Int32) -> Int32 {
        let (seconds, attoseconds) = (instant - now).components
        guard seconds >= 0 else { return 0 }
        let total = seconds.multipliedReportingOverflow(by: 1000).partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: min(total, Int64(atMost)))
    }

    /// One output pipe and what came through it, up to the cap.
    private struct Stream {
        let name: String
        let descriptor: Int32
        var bytes: [UInt8] = []
        var isOpen = true
        var overflowed = false

        init(name: String, descriptor: Int32) {
            self.name = name
            self.descriptor = descriptor
        }

        /// Reads what is there (all of it when `untilDrained`, else one chunk); closes the pipe
        /// at its end or once more than `bytesMax` came (the rest is not wanted).
        mutating func read(into buffer: inout [UInt8], bytesMax: Int, untilDrained: Bool) {
            repeat {
                let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    if count == 0 || errno != EAGAIN { closeNow() }
                    return
                }
                bytes.append(contentsOf: buffer[0..<count])
                if bytes.count > bytesMax {
                    overflowed = true
                    bytes.removeLast(bytes.count - bytesMax)
                    closeNow()
                    return
                }
            } while untilDrained
        }

        private mutating func closeNow() {
            close(descriptor)
            isOpen = false
        }
    }
}
