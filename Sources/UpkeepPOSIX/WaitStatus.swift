/// How a child process ended, decoded from the status `waitpid` reported for it.
public struct WaitStatus: Equatable, Sendable {
    /// The status word as `waitpid` stored it.
    public let raw: Int32

    public init(_ raw: Int32) { self.raw = raw }

    /// The program's exit code, or nil when a signal ended it.
    public var exitCode: Int32? { raw & 0x7f == 0 ? (raw >> 8) & 0xff : nil }

    /// The signal that ended the program, or nil when it exited.
    public var signal: Int32? { raw & 0x7f == 0 ? nil : raw & 0x7f }

    /// The exit code, or 128 + the signal, as a shell reports it.
    public var shellCode: Int32 { exitCode ?? 128 + (signal ?? 0) }
}
