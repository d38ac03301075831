import Foundation
import UpkeepCore
import UpkeepKube
import UpkeepPOSIX

/// What the systemctl stand-in records about a unit (`<root>/run/upkeep-sandbox/<unit>.json`),
/// in systemd's own words.
public struct UnitState: Codable, Sendable, Equatable {
    /// `active`, `activating`, `deactivating`, `inactive`, `failed`.
    public var activeState: String
    /// `running`, `start`, `auto-restart`, `stop-sigterm`, `dead`, `failed`.
    public var subState: String
    public var mainPID: Int32
    /// Seconds since the epoch when the current main process started (0: never).
    public var execMainStartTimestamp: Double
    /// `success`, `exit-code`, `signal`.
    public var result: String
    public var restarts: Int
    /// The supervising process (the stand-in's equivalent of PID 1 for this unit).
    public var supervisorPID: Int32

    public static let inactive = UnitState(activeState: "inactive", subState: "dead", mainPID: 0, execMainStartTimestamp: 0,
                                           result: "success", restarts: 0, supervisorPID: 0)

    /// The unit stopped: inactive, keeping the restart count and when its main process last started.
    var stopped: UnitState {
        var stopped = UnitState.inactive
        stopped.restarts = restarts
        stopped.execMainStartTimestamp = execMainStartTimestamp
        return stopped
    }
}

extension SandboxNode {
    /// Records the unit as stopped and no longer ready.
    func recordStopped(_ state: UnitState) {
        try? JSONFiles.write(state.stopped, to: unitStateFile)
        unlink(readyFile)
    }
}

/// `systemctl` for sandbox nodes: `start`, `stop`, `restart`, `is-active`, `show -p …`, `status`,
/// `daemon-reload` for the units `k3s` (servers) and `k3s-agent` (agents), supervising the
/// node's fake k3s the way the k3s unit files configure systemd (`Type=notify`,
/// `Restart=always`, `RestartSec=5s`). The agent's production systemd code runs unchanged.
public enum SystemctlStandIn {
    public static let restartSeconds = 5.0
    public static let stopTimeoutSeconds = 30.0
    /// Bound on `start` waiting for readiness (the k3s unit's own TimeoutStartSec=0 waits forever).
    public static let startTimeoutVariable = "UPKEEP_SANDBOX_START_TIMEOUT_SECONDS"

    public static func main(_ arguments: [String], program: String, environment: [String: String]) -> Int32 {
        var words = arguments.filter { !$0.hasPrefix("--") || $0 == "--no-block" }
        let noBlock = words.contains("--no-block")
        words.removeAll { $0 == "--no-block" || $0 == "-q" || $0 == "--quiet" }
        guard let verb = words.first else {
            printError("usage: systemctl start|stop|restart|is-active|show|status|daemon-reload UNIT")
            return 1
        }
        if verb == "daemon-reload" { return 0 }
        let node: SandboxNode
        do {
            node = try locateNode(program: program, environment: environment)
        } catch {
            printError("\(error)")
            return 1
        }
        var properties: [String] = []
        var units: [String] = []
        var index = 1
        while index < words.count {
            if words[index] == "-p" || words[index] == "--property", index + 1 < words.count {
                properties += words[index + 1].split(separator: ",").map(String.init)
                index += 2
            } else if words[index].hasPrefix("-p") {
                properties += words[index].dropFirst(2).split(separator: ",").map(String.init)
                index += 1
            } else {
                units.append(words[index].hasSuffix(".service") ? String(words[index].dropLast(8)) : words[index])
                index += 1
            }
        }
        for option in arguments where option.hasPrefix("--property=") {
            properties += option.dropFirst("--property=".count).split(separator: ",").map(String.init)
        }
        guard let unit = units.first else {
            printError("Too few arguments.")
            return 1
        }
        guard unit == node.unit else {
            if verb == "is-active" {
                print("inactive")
                return 3
            }
            if verb == "show" {
                printShow(UnitState.inactive, unit: unit, loaded: false, properties: properties)
                return 0
            }
            printError("Failed to \(verb) \(unit).service: Unit \(unit).service not found.")
            return 5
        }
        let timeout = environment[startTimeoutVariable].flatMap(Double.init) ?? 300
        switch verb {
        case "start", "stop", "restart":
            // systemd runs one job per unit at a time; so do concurrent stand-ins (for example a
            // restart left running by a killed agent and the one its successor issues): each
            // changes the unit under a lock, and only waits for readiness after releasing it.
            let changed = withUnitLock(node) { () -> Int32 in
                if verb == "stop" { return stop(node) }
                if verb == "restart", case let stopped = stop(node), stopped != 0 { return stopped }
                return launch(node)
            }
            guard changed == 0, verb != "stop", !noBlock else { return changed }
            return waitActive(node, timeoutSeconds: timeout)
        case "is-active":
            let state = currentState(node)
            print(state.activeState)
            return state.activeState == "active" ? 0 : 3
        case "show":
            printShow(currentState(node), unit: unit, loaded: true, properties: properties)
            return 0
        case "status":
            let state = currentState(node)
            print("● \(unit).service - Lightweight Kubernetes")
            print("     Loaded: loaded (/etc/systemd/system/\(unit).service; enabled; preset: enabled)")
            print("     Active: \(state.activeState) (\(state.subState))")
            if state.mainPID > 0 { print("   Main PID: \(state.mainPID) (k3s-\(node.isServer ? "server" : "agent"))") }
            return state.activeState == "active" ? 0 : 3
        default:
            printError("Unknown command verb \(verb).")
            return 1
        }
    }

    static func printError(_ message: String) { FileHandle.standardError.write(Data((message + "\n").utf8)) }

    static func locateNode(program: String, environment: [String: String]) throws -> SandboxNode {
        if let root = environment[FakeK3s.rootVariable], !root.isEmpty { return try SandboxNode.load(root: root) }
        if program.contains("/") {
            let absolute = program.hasPrefix("/") ? program : FileManager.default.currentDirectoryPath + "/" + program
            let root = ((absolute as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            if FileManager.default.fileExists(atPath: "\(root)/\(SandboxNode.descriptorName)") { return try SandboxNode.load(root: root) }
        }
        throw SandboxError("this systemctl serves sandbox nodes: run it as <node>/bin/systemctl or set \(FakeK3s.rootVariable)")
    }

    /// The recorded state, corrected when its supervisor is gone (a killed sandbox).
    public static func currentState(_ node: SandboxNode) -> UnitState {
        guard var state = try? JSONFiles.read(UnitState.self, from: node.unitStateFile) else { return .inactive }
        if state.supervisorPID > 0, !Spawn.isAlive(state.supervisorPID), state.activeState != "inactive", state.activeState != "failed" {
            state.activeState = "failed"
            state.subState = "failed"
            state.mainPID = 0
            state.result = "signal"
        }
        return state
    }

    static func printShow(_ state: UnitState, unit: String, loaded: Bool, properties: [String]) {
        var values: [(String, String)] = [
            ("Id", "\(unit).service"), ("LoadState", loaded ? "loaded" : "not-found"), ("ActiveState", state.activeState),
            ("SubState", state.subState), ("MainPID", String(state.mainPID)), ("Result", state.result),
            ("NRestarts", String(state.restarts)),
            ("ExecMainStartTimestamp", state.execMainStartTimestamp > 0 ? systemdTimestamp(state.execMainStartTimestamp) : ""),
            ("ExecMainPID", String(state.mainPID)), ("Type", "notify"), ("Restart", "always"),
        ]
        if !properties.isEmpty {
            values = properties.map { name in (name, values.first { $0.0 == name }?.1 ?? "") }
        }
        for (name, value) in values { print("\(name)=\(value)") }
    }

    /// `Sat 2026-11-28 14:04:35 UTC`, as `systemctl show` prints timestamps.
    static func systemdTimestamp(_ seconds: Double) -> String {
        let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1970-01-01 was a Thursday
        let weekday = days[Int((Int64(seconds) / 86400) % 7)]
        let text = KubeTime.format(seconds)  // 2026-11-28T14:04:35Z
        return "\(weekday) \(text.prefix(10)) \(text.dropFirst(11).prefix(8)) UTC"
    }

    // MARK: - Verbs

    /// Most seconds a stand-in waits for another one to finish changing the unit (a stop waits
    /// up to `stopTimeoutSeconds` for the supervisor, then kills it).
    static let lockWaitSeconds = stopTimeoutSeconds + 30

    /// Runs `body` holding the unit's lock (`flock` on `<unit>.json.lock`, released when the
    /// process ends, so a killed stand-in never leaves it held).
    static func withUnitLock(_ node: SandboxNode, _ body: () -> Int32) -> Int32 {
        let path = node.unitStateFile + ".lock"
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            printError("Failed to lock \(node.unit).service: cannot open \(path): \(String(cString: strerror(errno)))")
            return 1
        }
        defer { close(descriptor) }
        let deadline = Date().addingTimeInterval(lockWaitSeconds)
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, Date() < deadline else {
                printError("Failed to change \(node.unit).service: another systemctl held it for \(Int(lockWaitSeconds)) s.")
                return 1
            }
            usleep(20_000)
        }
        defer { flock(descriptor, LOCK_UN) }
        return body()
    }

    /// Whether another stand-in holds the unit's lock right now (it is stopping or starting it).
    static func isBeingChanged(_ node: SandboxNode) -> Bool {
        let descriptor = open(node.unitStateFile + ".lock", O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { return true }
        flock(descriptor, LOCK_UN)
        return false
    }

    /// Starts the unit's supervisor unless one runs; returns once the supervisor has recorded
    /// itself, so the next stand-in to take the lock finds it.
    static func launch(_ node: SandboxNode) -> Int32 {
        var state = currentState(node)
        guard state.supervisorPID == 0 || !Spawn.isAlive(state.supervisorPID) else { return 0 }
        // Recorded before the supervisor starts: from then on only the supervisor writes.
        state = UnitState(activeState: "activating", subState: "start", mainPID: 0, execMainStartTimestamp: 0,
                          result: "success", restarts: state.restarts, supervisorPID: 0)
        let supervisor: pid_t
        do {
            try JSONFiles.write(state, to: node.unitStateFile)
            supervisor = try Spawn.detached([node.hostBinary, "unit-supervisor", node.root],
                                            environment: PosixSpawn.inheritedEnvironment(applying: [FakeK3s.rootVariable: node.root]),
                                            logFile: node.logFile)
        } catch {
            state.activeState = "failed"
            state.subState = "failed"
            try? JSONFiles.write(state, to: node.unitStateFile)
            printError("Failed to start \(node.unit).service: \(error)")
            return 1
        }
        let deadline = Date().addingTimeInterval(supervisorRecordSeconds)
        while currentState(node).supervisorPID != supervisor {
            guard Spawn.isAlive(supervisor), Date() < deadline else {
                printError("Failed to start \(node.unit).service: its supervisor \(supervisor) did not record itself; see \(node.logFile).")
                return 1
            }
            usleep(10_000)
        }
        return 0
    }

    /// Most seconds a new supervisor takes to record itself in the unit state.
    static let supervisorRecordSeconds = 20.0

    /// Waits (bounded) for the unit to become active, as `systemctl start` does for a
    /// `Type=notify` unit.
    static func waitActive(_ node: SandboxNode, timeoutSeconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let current = currentState(node)
            if current.activeState == "active" { return 0 }
            if current.activeState == "inactive" && !isBeingChanged(node) {
                // Stopped by another job (a `stop`, the sandbox going down), as systemd cancels
                // a start job when a stop job for the unit arrives.
                printError("Job for \(node.unit).service canceled.")
                return 1
            }
            if current.subState == "auto-restart" || current.activeState == "failed" {
                printError("Job for \(node.unit).service failed because the control process exited with error code.\nSee \"systemctl status \(node.unit).service\" and \"journalctl -xeu \(node.unit).service\" for details.")
                return 1
            }
            usleep(50_000)
        }
        printError("Job for \(node.unit).service timed out after \(Int(timeoutSeconds)) s (sandbox bound; set \(startTimeoutVariable)).")
        return 1
    }

    /// `systemctl stop` for the sandbox itself (teardown): under the unit's lock, so it waits for
    /// a stand-in that is changing the unit right now instead of racing it.
    public static func stopUnit(_ node: SandboxNode) -> Int32 { withUnitLock(node) { stop(node) } }

    static func stop(_ node: SandboxNode) -> Int32 {
        let state = currentState(node)
        if state.supervisorPID > 0 && Spawn.isAlive(state.supervisorPID) {
            kill(state.supervisorPID, SIGTERM)
            let deadline = Date().addingTimeInterval(stopTimeoutSeconds)
            while Spawn.isAlive(state.supervisorPID) && Date() < deadline { usleep(20_000) }
            if Spawn.isAlive(state.supervisorPID) {
                if state.mainPID > 0 { kill(state.mainPID, SIGKILL) }
                kill(state.supervisorPID, SIGKILL)
            }
        } else if state.mainPID > 0 {
            Spawn.terminate(state.mainPID, graceSeconds: 10)
        }
        node.recordStopped(state)
        return 0
    }
}

/// The process that supervises one unit's main process, as systemd would for the k3s unit.
public enum UnitSupervisor {
    public static func run(root: String) -> Int32 {
        guard let node = try? SandboxNode.load(root: root) else {
            FileHandle.standardError.write(Data("unit-supervisor: no sandbox node at \(root)\n".utf8))
            return 1
        }
        let stopRequested = SignalFlag(SIGTERM)
        let previous = (try? JSONFiles.read(UnitState.self, from: node.unitStateFile))?.restarts ?? 0
        var state = UnitState(activeState: "activating", subState: "start", mainPID: 0, execMainStartTimestamp: 0, result: "success",
                              restarts: previous, supervisorPID: getpid())
        var command = [node.k3sBinary, node.isServer ? "server" : "agent"]
        if let netns = node.netns { command = ["/usr/sbin/ip", "netns", "exec", netns] + command }
        while true {
            unlink(node.readyFile)
            let pid: pid_t
            do {
                // In a process group of its own, which a stop signals whole: what k3s starts with
                // it (the sandbox's etcd member) stops with it.
                pid = try Spawn.detached(command, environment: PosixSpawn.inheritedEnvironment(applying: [FakeK3s.rootVariable: node.root]),
                                         logFile: node.logFile, newSession: false, ownGroup: true)
            } catch {
                state.activeState = "failed"
                state.subState = "failed"
                state.result = "exit-code"
                try? JSONFiles.write(state, to: node.unitStateFile)
                return 1
            }
            state.mainPID = pid
            state.execMainStartTimestamp = Date().timeIntervalSince1970
            state.activeState = "activating"
            state.subState = "start"
            try? JSONFiles.write(state, to: node.unitStateFile)
            var status: Int32 = 0
            var exited = false
            while true {
                if stopRequested.isSet {
                    state.activeState = "deactivating"
                    state.subState = "stop-sigterm"
                    try? JSONFiles.write(state, to: node.unitStateFile)
                    kill(-pid, SIGTERM)
                    if !reaped(pid, withinSeconds: 15) {
                        kill(-pid, SIGKILL)
                        _ = reaped(pid, withinSeconds: 5)
                    }
                    node.recordStopped(state)
                    return 0
                }
                if waitpid(pid, &status, WNOHANG) == pid {
                    exited = true
                    break
                }
                if state.activeState == "activating", FileManager.default.fileExists(atPath: node.readyFile) {
                    state.activeState = "active"
                    state.subState = "running"
                    try? JSONFiles.write(state, to: node.unitStateFile)
                }
                usleep(50_000)
            }
            guard exited else { continue }
            // Restart=always, RestartSec=5s.
            state.result = (status & 0x7f) == 0 ? "exit-code" : "signal"
            state.activeState = "activating"
            state.subState = "auto-restart"
            state.mainPID = 0
            state.restarts += 1
            try? JSONFiles.write(state, to: node.unitStateFile)
            unlink(node.readyFile)
            let resume = Date().addingTimeInterval(SystemctlStandIn.restartSeconds)
            while Date() < resume {
                if stopRequested.isSet {
                    var stopped = UnitState.inactive
                    stopped.restarts = state.restarts
                    try? JSONFiles.write(stopped, to: node.unitStateFile)
                    return 0
                }
                usleep(50_000)
            }
        }
    }
}

/// Waits (bounded) for the supervised child `pid` to exit and reaps it.
private func reaped(_ pid: pid_t, withinSeconds seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid || (result < 0 && errno == ECHILD) { return true }
        usleep(20_000)
    }
    return false
}

/// A flag set when a signal arrives (through a dispatch source, not a C handler).
final class SignalFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    private let source: any DispatchSourceSignal

    init(_ number: Int32) {
        signal(number, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {}
        source.resume()
        source.setEventHandler { [unowned self] in
            lock.lock()
            set = true
            lock.unlock()
        }
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return set
    }
}
