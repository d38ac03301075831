import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepStore
import UpkeepCore

/// Opens the state database named by the configuration, or says what to change; events it
/// records go to the configuration's notification sinks.
func openStateStore(_ config: ControllerConfig) throws -> StateStore {
    do {
        return try StateStore(stateDirectory: config.resolvedStateDirectory(), notifications: config.notificationRouting)
    } catch {
        throw CommandFailure(code: RolloutExitCode.state, message: error.description)
    }
}

/// Opens the state database for commands that only read it (`status`, `history`, `report`):
/// nothing is created or written (`StateStore.reading`).
func openStateStoreForReading(_ config: ControllerConfig) throws -> StateStore {
    do {
        return try StateStore.reading(stateDirectory: config.resolvedStateDirectory())
    } catch {
        throw CommandFailure(code: RolloutExitCode.state, message: error.description)
    }
}

/// A failure with the exit code it maps to and a message that says what to do.
struct CommandFailure: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { message }
}

/// Replaces the file at `path` with `text` (mode 0644): written beside it and renamed, so a reader
/// (a textfile collector, a script) never sees half a file. A failure is a usage error naming the path.
func writeReplacing(_ path: String, with text: String) throws {
    try writeReplacing(path, bytes: Array(text.utf8))
}

/// `writeReplacing(_:with:)` for any bytes (a PDF).
func writeReplacing(_ path: String, bytes: [UInt8]) throws {
    let partial = path + ".partial"
    do {
        try Data(bytes).write(to: URL(fileURLWithPath: partial))
        chmod(partial, 0o644)
        guard rename(partial, path) == 0 else { throw CommandFailure(code: RolloutExitCode.usage, message: String(cString: strerror(errno))) }
    } catch {
        unlink(partial)
        throw CommandFailure(code: RolloutExitCode.usage, message: "cannot write \(path): \(error)")
    }
}

/// JSON as the commands print it: sorted keys, pretty, slashes unescaped.
func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}

/// Pads columns to their widest cell, two spaces apart.
func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}

extension RolloutRecord {
    /// `completed`, `rolled back: …`, `running`, `blocked: …`.
    var outcomeText: String {
        switch status {
        case .notStarted: "not started"
        case .running: "running"
        case .stopping: "stopping"
        case .blocked(let reason): "blocked: \(reason)"
        case .finished(.completed): "completed"
        case .finished(.rolledBack(let cause)): "rolled back: \(cause)"
        case .finished(.failed(let cause)): "failed: \(cause)"
        case .finished(.abandoned(let reason)): "abandoned: \(reason)"
        }
    }

    /// `3 done, 1 reverted` over the forward moves.
    var nodeSummary: String {
        var counts: [MoveProgress.Stage: Int] = [:]
        for step in steps where !step.progress.isRollback { counts[step.progress.stage, default: 0] += 1 }
        let order: [MoveProgress.Stage] = [.done, .working, .waiting, .reverted, .unhealthy, .cancelled]
        return order.compactMap { stage in counts[stage].map { "\($0) \(stageText(stage))" } }.joined(separator: ", ")
    }

    var isFinished: Bool {
        if case .finished = status { true } else { false }
    }

    /// A stage as shown: a step that a finished rollout never started is "not started", not
    /// "waiting" (nothing waits any more).
    func stageText(_ stage: MoveProgress.Stage) -> String {
        stage == .waiting && isFinished ? "not started" : stage.rawValue
    }

    /// A step's phase word as shown, "not started" for a step a finished rollout never started.
    func phaseText(_ progress: MoveProgress) -> String {
        progress.stage == .waiting && isFinished ? "not started" : progress.phase
    }
}
