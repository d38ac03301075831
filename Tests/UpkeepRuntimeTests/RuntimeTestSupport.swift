import Foundation
import Synchronization
import UpkeepRollout
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
