#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `status` reports about the node.
public struct AgentStatus: Codable, Equatable, Sendable {
    public var nodeName: String
    public var unit: String
    public var isServer: Bool
    /// As k3s and `kubernetes.io/arch` name it.
    public var arch: String
    public var live: LiveBinary?
    public var unitState: Systemctl.UnitState?
    /// Why the unit state could not be read.
    public var unitError: String?
    public var binaryPath: String
    public var binaryFreeBytes: Int64
    public var dataDir: String
    public var dataFreeBytes: Int64
    public var staged: [StagedArtifact]
    public var watch: WatchRecord?
    /// Newest first.
    public var recentOperations: [OperationEntry]
}

/// The machine's architecture as k3s names it (`uname -m` → amd64, arm64, arm, s390x).
public enum MachineArch {
    public static func current() -> String {
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: names.machine) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return k3sName(forUname: machine)
    }

    public static func k3sName(forUname machine: String) -> String {
        switch machine {
        case "x86_64", "amd64": "amd64"
        case "aarch64", "arm64": "arm64"
        case "armv7l", "armv7", "armv6l", "armhf": "arm"
        default: machine
        }
    }
}
