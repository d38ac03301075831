import Foundation
import UpkeepRuntime
import UpkeepStore

/// Who runs this command, as operators' records name them (maintenance mode's ConfigMap, its
/// periods in the state database): `alice@ctl-1`, the OS user and this host. Run through sudo,
/// the user behind it: `alice@ctl-1 (sudo)`. Read as the operations' who-did-what reads it
/// (`Initiator.current`), written shorter.
enum OperatorIdentity {
    static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        name(Initiator.current(environment: environment))
    }

    static func name(_ who: Initiator) -> String {
        if let service = who.service { return "\(service)@\(who.host)" }
        if who.user == "root", let user = who.sudoUser, user != "root" { return "\(user)@\(who.host) (sudo)" }
        return "\(who.user)@\(who.host)"
    }
}
