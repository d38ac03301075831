import Foundation
import Synchronization
import UpkeepRollout
import UpkeepCore

/// A `WorldModel` kept in a JSON file, rewritten atomically (write, then rename) after every
/// operation, so a process killed at any moment leaves the world as it was after its last
/// operation, the way real agents keep their journals across a controller's crash. It is the
/// runtime's `AgentTransport` and `ClusterObserver` in tests and in `upkeep-runtime-probe`.
public final class FileWorld: AgentTransport, ClusterObserver, Sendable {
    public let path: String
    /// How long each operation takes before it runs (an install longer, so a kill lands mid-rollout).
    public let operationDelayMilliseconds: Int
    /// After running this (node, command) the agent writes `<path>.paused` and answers only
    /// 120 s later: the operation ran, its answer is not yet recorded, and a test kills the
    /// controller right there.
    public let pauseAfter: (node: String, command: String)?
    private let model: Mutex<WorldModel>

    /// Creates the file with `model`.
    public init(path: String, model: WorldModel, operationDelayMilliseconds: Int = 0) throws {
        self.path = path
        self.operationDelayMilliseconds = operationDelayMilliseconds
        pauseAfter = nil
        self.model = Mutex(model)
        try Self.save(model, to: path)
    }

    /// Loads the world a (possibly killed) process left in `path`.
    public init(loading path: String, operationDelayMilliseconds: Int = 0, pauseAfter: (node: String, command: String)? = nil) throws {
        self.path = path
        self.operationDelayMilliseconds = operationDelayMilliseconds
        self.pauseAfter = pauseAfter
        model = Mutex(try Self.load(path))
    }

    public static func load(_ path: String) throws -> WorldModel {
        try JSONDecoder().decode(WorldModel.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public var snapshot: WorldModel { model.withLock { $0 } }

    public func send(_ request: AgentRequest, deadlineSeconds: Int, progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        let delay = request.command.name == "install" ? operationDelayMilliseconds * 4 : operationDelayMilliseconds
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        let reply = try model.withLock { world in
            let reply = world.execute(request)
            try Self.save(world, to: path)
            return reply
        }
        if let pauseAfter, pauseAfter.node == request.node, pauseAfter.command == request.command.name {
            _ = FileManager.default.createFile(atPath: pausedMarker, contents: nil)
            try await Task.sleep(for: .seconds(120))
        }
        return reply
    }

    /// Exists once the world paused after `pauseAfter`.
    public var pausedMarker: String { path + ".paused" }

    public func observe() async throws -> ClusterObservation {
        model.withLock { $0.observation }
    }

    private static func save(_ model: WorldModel, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let temporary = path + ".tmp"
        try encoder.encode(model).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}
