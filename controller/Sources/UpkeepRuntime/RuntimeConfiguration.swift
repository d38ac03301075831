import Foundation
import UpkeepRollout
import UpkeepStore

/// Who this controller is and the bounds the runtime keeps around the engine's own.
public struct RuntimeConfiguration: Sendable {
    /// Names this controller in the lease (`host pid N`); shown to a controller it keeps out.
    public var holder: String
    /// Who started the operations of this run: recorded with each (`history`, `report`).
    /// `upkeep serve` gives `Initiator.serve(…)` and the policy that decided.
    public var initiator: Initiator
    /// The lease lasts this long past each renewal; renewed every third of it.
    public var leaseTTLMilliseconds: Int64
    /// Take the lease even though another holder's has not expired (the operator knows it is gone).
    public var forceTakeover: Bool
    /// Requests in flight at once; more are answered "not sent" at once and retried by the engine.
    public var sendsInFlightMax: Int
    /// How long one look at the cluster may take.
    public var observeTimeoutSeconds: Int
    /// How long one read of the gates may take (each gate's own bound is shorter).
    public var gateReadTimeoutSeconds: Int
    /// Deadline given to the transport for cordon, uncordon and commit, and added to the policy's
    /// own timeouts for drain, install and rollback.
    public var shortRequestSeconds: Int
    /// Deadline for streaming one binary to an agent.
    public var stageRequestSeconds: Int
    /// Past a request's deadline, how long the runtime still waits for the transport to give up
    /// on its own before it reports the request as unanswered.
    public var answerGraceSeconds: Int

    public init(holder: String = RuntimeConfiguration.defaultHolder(), initiator: Initiator = .current(),
                leaseTTLMilliseconds: Int64 = 30_000, forceTakeover: Bool = false,
                sendsInFlightMax: Int = 256, observeTimeoutSeconds: Int = 30, gateReadTimeoutSeconds: Int = 60, shortRequestSeconds: Int = 60,
                stageRequestSeconds: Int = 900, answerGraceSeconds: Int = 15) {
        self.holder = holder
        self.initiator = initiator
        self.leaseTTLMilliseconds = leaseTTLMilliseconds
        self.forceTakeover = forceTakeover
        self.sendsInFlightMax = sendsInFlightMax
        self.observeTimeoutSeconds = observeTimeoutSeconds
        self.gateReadTimeoutSeconds = gateReadTimeoutSeconds
        self.shortRequestSeconds = shortRequestSeconds
        self.stageRequestSeconds = stageRequestSeconds
        self.answerGraceSeconds = answerGraceSeconds
    }

    /// `<hostname> pid <pid>` (the kernel's host name: no DNS lookup).
    public static func defaultHolder() -> String {
        "\(hostName()) pid \(getpid())"
    }

    /// The kernel's host name (no DNS lookup), or `unknown-host`.
    public static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        return gethostname(&name, name.count - 1) == 0 ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown-host"
    }

    /// The deadline handed to the transport with `command`.
    public func deadlineSeconds(for command: AgentCommand) -> Int {
        switch command {
        case .cordon, .uncordon, .commit: shortRequestSeconds
        case .drain(let timeoutSeconds, _): timeoutSeconds + shortRequestSeconds
        case .stage: stageRequestSeconds
        case .install(_, let healthTimeoutSeconds, _), .rollback(let healthTimeoutSeconds): healthTimeoutSeconds + shortRequestSeconds
        case .backup, .restoreBackup: stageRequestSeconds
        case .stopK3s: shortRequestSeconds * 2
        // A restore waits for `--cluster-reset` to finish before k3s starts and is probed.
        case .restore(_, _, let healthTimeoutSeconds), .rejoin(_, let healthTimeoutSeconds): healthTimeoutSeconds + shortRequestSeconds * 3
        }
    }
}

extension Initiator {
    /// Whoever runs this process: the effective user's name (getpwuid of the effective uid; the
    /// uid when it has none), `SUDO_USER` when set, and the host.
    public static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> Initiator {
        let uid = geteuid()
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let user = getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0 && result != nil && entry.pw_name != nil
            ? String(cString: entry.pw_name) : "uid \(uid)"
        let sudoUser = environment["SUDO_USER"].flatMap { $0.isEmpty ? nil : $0 }
        return Initiator(user: user, sudoUser: sudoUser, host: RuntimeConfiguration.hostName())
    }
}
