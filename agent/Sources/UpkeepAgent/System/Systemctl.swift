import UpkeepAgentCore
/// The k3s unit through `systemctl` (the real one, or the sandbox's stand-in with the same
/// command line): restart, is-active, show.
public struct Systemctl: Sendable {
    public let path: String
    public let unit: String
    public let timeoutSeconds: Double

    public init(path: String, unit: String, timeoutSeconds: Double) {
        self.path = path
        self.unit = unit
        self.timeoutSeconds = timeoutSeconds
    }

    /// `systemctl restart <unit>`; a non-zero exit is a failure naming systemctl's message.
    public func restart() async throws(AgentFailure) {
        let outcome = try await ProcessRunner.run(path, ["restart", unit], timeoutSeconds: timeoutSeconds)
        guard outcome.succeeded else {
            throw AgentFailure(.io, "systemctl restart \(unit) failed (exit \(outcome.exitCode.map(String.init) ?? "by signal")): \(outcome.summary)")
        }
    }

    /// `systemctl stop <unit>` (which returns once the stop job finished), then `is-active` must
    /// say the unit is not running. Returns whether it was active before; a unit still running
    /// afterwards is a failure naming its state.
    public func stop() async throws(AgentFailure) -> Bool {
        let before = try await activeState()
        let outcome = try await ProcessRunner.run(path, ["stop", unit], timeoutSeconds: timeoutSeconds)
        guard outcome.succeeded else {
            throw AgentFailure(.conflict, "systemctl stop \(unit) failed (exit \(outcome.exitCode.map(String.init) ?? "by signal")): \(outcome.summary)")
        }
        let after = try await activeState()
        guard after == "inactive" || after == "failed" else {
            throw AgentFailure(.conflict, "\(unit) is \(after) after systemctl stop returned")
        }
        return before == "active" || before == "activating" || before == "reloading"
    }

    /// `systemctl is-active <unit>`: the state word it prints ("active", "failed", "activating", ...).
    public func activeState() async throws(AgentFailure) -> String {
        let outcome = try await ProcessRunner.run(path, ["is-active", unit], timeoutSeconds: min(timeoutSeconds, 10))
        let state = outcome.output.trimmingWhitespace()
        guard !state.isEmpty else { throw AgentFailure(.io, "systemctl is-active \(unit) printed nothing: \(outcome.summary)") }
        return state
    }

    public struct UnitState: Codable, Equatable, Sendable {
        public var activeState: String
        public var subState: String
        public var mainPID: Int?
    }

    /// `systemctl show -p ActiveState,SubState,MainPID <unit>`.
    public func show() async throws(AgentFailure) -> UnitState {
        let outcome = try await ProcessRunner.run(path, ["show", "-p", "ActiveState,SubState,MainPID", unit],
                                                  timeoutSeconds: min(timeoutSeconds, 10))
        guard outcome.succeeded else { throw AgentFailure(.io, "systemctl show \(unit) failed: \(outcome.summary)") }
        var properties: [String: String] = [:]
        for line in outcome.output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            properties[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return UnitState(activeState: properties["ActiveState"] ?? "unknown", subState: properties["SubState"] ?? "unknown",
                         mainPID: properties["MainPID"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil })
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
