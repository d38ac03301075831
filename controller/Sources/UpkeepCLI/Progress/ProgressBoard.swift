import Foundation
import UpkeepRollout

/// The operator's view of a running rollout. On a terminal: a per-node table redrawn in place
/// with each node's elapsed time and an ETA for the rest. Otherwise (pipes, logs, CI): one
/// timestamped line per phase change and per notice. Pure: it is given the time and the
/// engine's progress, and returns the text to write.
struct ProgressBoard {
    enum Mode { case terminal, lines }

    let mode: Mode
    let started: Date
    private var phases: [String: String] = [:]
    private var enteredWork: [String: Date] = [:]
    private var finishedAfter: [String: TimeInterval] = [:]
    private var drawnLines = 0

    init(mode: Mode, started: Date) {
        self.mode = mode
        self.started = started
    }

    /// The text for a new snapshot of the moves at `now` (empty when nothing changed, in lines mode).
    mutating func update(_ moves: [MoveProgress], at now: Date) -> String {
        var changes: [String] = []
        for move in moves {
            let previous = phases[move.key]
            guard previous != move.phase else { continue }
            phases[move.key] = move.phase
            if move.stage == .working, enteredWork[move.key] == nil { enteredWork[move.key] = now }
            if move.stage != .working, move.stage != .waiting, let entered = enteredWork[move.key], finishedAfter[move.key] == nil {
                finishedAfter[move.key] = now.timeIntervalSince(entered)
            }
            if previous != nil || move.stage != .waiting {
                changes.append("\(Self.timestamp(now)) \(move.node) \(Self.arrow(move)) \(move.phase)" + (move.note.map { " (\($0))" } ?? ""))
            }
        }
        switch mode {
        case .lines:
            return changes.map { $0 + "\n" }.joined()
        case .terminal:
            return redraw(moves, at: now)
        }
    }

    /// A notice, as a line above the table (terminal) or a timestamped line.
    mutating func notice(_ notice: Notice, at now: Date, moves: [MoveProgress]) -> String {
        let line = "\(Self.timestamp(now)) \(notice.level.rawValue.uppercased()) " + (notice.node.map { "\($0): " } ?? "") + notice.message + "\n"
        switch mode {
        case .lines:
            return line
        case .terminal:
            let clear = erase()
            drawnLines = 0
            return clear + line + redraw(moves, at: now)
        }
    }

    /// Seconds left at the pace of the nodes finished so far; nil until one has finished.
    func estimatedSecondsLeft(_ moves: [MoveProgress], at now: Date) -> TimeInterval? {
        guard !finishedAfter.isEmpty else { return nil }
        let pace = finishedAfter.values.reduce(0, +) / Double(finishedAfter.count)
        var left = 0.0
        for move in moves {
            switch move.stage {
            case .waiting: left += pace
            case .working: left += max(0, pace - now.timeIntervalSince(enteredWork[move.key] ?? now))
            default: break
            }
        }
        return left
    }

    private mutating func redraw(_ moves: [MoveProgress], at now: Date) -> String {
        var lines: [String] = []
        let done = moves.filter { $0.stage == .done }.count
        let eta = estimatedSecondsLeft(moves, at: now).map { "ETA \(Self.duration($0))" } ?? "ETA --"
        lines.append("elapsed \(Self.duration(now.timeIntervalSince(started)))  \(done)/\(moves.count) done  \(eta)")
        let nodeWidth = max(4, moves.map(\.node.count).max() ?? 4)
        let waveWidth = max(4, moves.map(\.wave.count).max() ?? 4)
        for move in moves {
            let elapsed: String
            if let finished = finishedAfter[move.key] {
                elapsed = Self.duration(finished)
            } else if let entered = enteredWork[move.key] {
                elapsed = Self.duration(now.timeIntervalSince(entered))
            } else {
                elapsed = ""
            }
            let node = move.node.padding(toLength: nodeWidth, withPad: " ", startingAt: 0)
            let wave = move.wave.padding(toLength: waveWidth, withPad: " ", startingAt: 0)
            let phase = move.phase.padding(toLength: 16, withPad: " ", startingAt: 0)
            lines.append("  \(node)  \(wave) \(Self.arrow(move).padding(toLength: 34, withPad: " ", startingAt: 0)) \(phase) \(elapsed)")
        }
        let text = erase() + lines.map { $0 + "\n" }.joined()
        drawnLines = lines.count
        return text
    }

    /// Moves the cursor up over the table drawn last and clears to the end of the screen.
    private func erase() -> String {
        drawnLines == 0 ? "" : "\u{1B}[\(drawnLines)F\u{1B}[J"
    }

    static func arrow(_ move: MoveProgress) -> String { "\(move.from) -> \(move.to)" }

    static func duration(_ seconds: TimeInterval) -> String {
        let whole = max(0, Int(seconds.rounded()))
        return whole >= 3600 ? String(format: "%dh%02dm", whole / 3600, whole / 60 % 60) : String(format: "%d:%02d", whole / 60, whole % 60)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
