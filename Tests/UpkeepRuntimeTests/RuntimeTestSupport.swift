import Foundation
import Synchronization
import UpkeepRollout
import UpkeepCore
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing with `TimedOut(what)` (and cancelling it) after a generous `seconds`.
func bounded<T: Sendable>(_ what: String, seconds: Int = 120, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(what: what) }
        return value
    }
}

/// How `body` ended, as a value.
func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}

/// Collects the runtime's updates.
final class Recorder: Sendable {
    private let updates = Mutex<[RuntimeUpdate]>([])

    func add(_ update: RuntimeUpdate) { updates.withLock { $0.append(update) } }

    var notices: [Notice] {
        updates.withLock { $0.compactMap { if case .notice(let notice, _) = $0 { notice } else { nil } } }
    }
}

/// Forwards to a world, first checking through a separate database connection that the
/// request is already part of the persisted engine state: the runtime must persist before it acts.
final class PersistedFirstTransport: AgentTransport, Sendable {
    let world: FileWorld
    let reader: StateStore
    let rolloutID: String
    /// Node whose agent does not answer while `silent` is set.
    let silentNode: String?
    let silent = Mutex(true)
    private let log = Mutex<(checked: Int, violations: [String])>((0, []))

    init(world: FileWorld, reader: StateStore, rolloutID: String, silentNode: String? = nil) {
        self.world = world
        self.reader = reader
        self.rolloutID = rolloutID
        self.silentNode = silentNode
    }

    var checked: Int { log.withLock { $0.checked } }
    var violations: [String] { log.withLock { $0.violations } }

    func send(_ request: AgentRequest, deadlineSeconds: Int, progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        let persisted = (try? reader.engine(rolloutID: rolloutID).unansweredRequests.map(\.operationID)) ?? []
        log.withLock { log in
            log.checked += 1
            if !persisted.contains(request.operationID) { log.violations.append("\(request.operationID) sent before it was persisted") }
        }
        if request.node == silentNode, silent.withLock({ $0 }) { throw CocoaError(.fileReadUnknown) }
        return try await world.send(request, deadlineSeconds: deadlineSeconds, progress: progress)
    }
}

/// The built `upkeep-runtime-probe` beside the test bundle (`swift build --build-tests` builds it).
func probePath() throws -> String {
    var candidates: [String] = []
    if let testBinary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((testBinary as NSString).deletingLastPathComponent + "/upkeep-runtime-probe")
    }
    candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/upkeep-runtime-probe")
    guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
        throw TimedOut(what: "no built upkeep-runtime-probe at \(candidates.joined(separator: " or ")); run 'swift build --build-tests' first")
    }
    return found
}

/// A cluster lock a test controls: it grants or refuses, and can be lost (with the holder told,
/// as a taken-over Lease is) or lapse (no word, as when the process was paused past its deadline).
final class ScriptedLock: ClusterLock, Sendable {
    private struct State {
        var refusal: ClusterLockError?
        var held = false
        var lost: (@Sendable (String) -> Void)?
        var operations: [String] = []
        var releases = 0
        var outages: [Bool] = []
    }

    private let state = Mutex(State())

    init(refusing refusal: ClusterLockError? = nil) {
        state.withLock { $0.refusal = refusal }
    }

    func acquire(operation: String, takeOver: Bool, outageAllowed: Bool,
                 lost: @escaping @Sendable (String) -> Void) async throws(ClusterLockError) -> ClusterLockGrant {
        let refusal = state.withLock { state -> ClusterLockError? in
            state.operations.append(operation)
            if state.refusal == nil {
                state.held = true
                state.lost = lost
            }
            return state.refusal
        }
        if let refusal { throw refusal }
        return .held(holder: "test (\(operation))", tookOverFrom: nil)
    }

    func isHeld(at now: Instant) -> Bool { state.withLock { $0.held } }

    func expectOutage(_ expected: Bool, at now: Instant) {
        state.withLock { state in
            if state.outages.last != expected { state.outages.append(expected) }
        }
    }

    func release() async {
        state.withLock { state in
            state.held = false
            state.releases += 1
        }
    }

    /// Another controller took it over: the holder is told.
    func lose(_ reason: String) {
        let tell = state.withLock { state -> (@Sendable (String) -> Void)? in
            state.held = false
            return state.lost
        }
        tell?(reason)
    }

    /// The deadline passed while the holder could not renew: nobody is told.
    func lapse() { state.withLock { $0.held = false } }

    var operations: [String] { state.withLock { $0.operations } }
    var releases: Int { state.withLock { $0.releases } }
    /// Each change of `expectOutage`, in order.
    var outages: [Bool] { state.withLock { $0.outages } }
}

/// Forwards to a world and calls `trigger` once, just before answering the first request whose
/// command is `command`: the moment a test makes something happen mid-rollout.
final class TriggeringTransport: AgentTransport, Sendable {
    let world: FileWorld
    let command: String
    private let trigger: Mutex<(@Sendable () -> Void)?>

    init(world: FileWorld, on command: String, _ trigger: @escaping @Sendable () -> Void) {
        self.world = world
        self.command = command
        self.trigger = Mutex(trigger)
    }

    func send(_ request: AgentRequest, deadlineSeconds: Int, progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        let reply = try await world.send(request, deadlineSeconds: deadlineSeconds, progress: progress)
        if request.command.name == command, let fire = trigger.withLock({ trigger in defer { trigger = nil }; return trigger }) { fire() }
        return reply
    }
}
