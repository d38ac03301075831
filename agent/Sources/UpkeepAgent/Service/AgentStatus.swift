import UpkeepAgentCore
import UpkeepCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `status` reports about the node.
public struct AgentStatus: Codable, Equatable, Sendable {
    public var nodeName: String
    public var unit: String
    public var role: NodeRole
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
    public var staged: [StagedBinary]
    /// k3s's images directory when the node imports its images from it (air-gapped).
    public var airgapImagesDir: String?
    public var watch: WatchRecord?
    /// Newest first.
    public var recentOperations: [OperationEntry]
}

/// The machine's architecture as k3s names it (`uname -m` mapped as install.sh maps it; an
/// architecture k3s does not know is reported as uname prints it).
public enum MachineArch {
    public static func current() -> String {
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: names.machine) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return (try? Arch(machine).rawValue) ?? machine
    }
}
