import Foundation
import UpkeepRuntime

/// Who runs this command, as operators' records name them (maintenance mode's ConfigMap, its
/// periods in the state database): `alice@ctl-1`, the OS user and this host. Run through sudo,
/// the user behind it: `alice@ctl-1 (sudo)`.
enum OperatorIdentity {
    static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let host = RuntimeConfiguration.hostName()
        if geteuid() == 0, let user = environment["SUDO_USER"], !user.isEmpty, user != "root" { return "\(user)@\(host) (sudo)" }
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "uid \(geteuid())@\(host)" }
        return "\(String(cString: name))@\(host)"
    }
}
