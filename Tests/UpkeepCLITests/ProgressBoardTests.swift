import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepRollout
import UpkeepCore

/// The live progress view: plain timestamped lines off a terminal, a redrawn table with
/// per-node elapsed time and an ETA on one.
@Suite struct ProgressBoardTests {
    static let from = try! K3sVersion("v1.30.6+k3s1")
    static let to = try! K3sVersion("v1.31.2+k3s1")

    static func move(_ key: String, _ node: String, _ phase: String, _ stage: MoveProgress.Stage) -> MoveProgress {
        MoveProgress(key: key, node: node, role: .agent, from: from, to: to, phase: phase, stage: stage, wave: "hop 1 w1",
                     isRollback: false, note: nil)
    }

    @Test func offATerminalEachPhaseChangeIsOneTimestampedLine() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var board = ProgressBoard(mode: .lines, started: start)
        #expect(board.update([Self.move("f0", "a", "pending", .waiting), Self.move("f1", "b", "pending", .waiting)], at: start) == "")
        let text = board.update([Self.move("f0", "a", "draining", .working), Self.move("f1", "b", "pending", .waiting)],
                                at: start.addingTimeInterval(5))
        #expect(text == "2027-01-15T08:00:05Z a v1.30.6+k3s1 -> v1.31.2+k3s1 draining\n")
        #expect(board.update([Self.move("f0", "a", "draining", .working), Self.move("f1", "b", "pending", .waiting)],
                             at: start.addingTimeInterval(6)) == "", "no change, no line")
        let notice = board.notice(Notice(.warning, node: "a", "drain is slow"), at: start.addingTimeInterval(7), moves: [])
        #expect(notice == "2027-01-15T08:00:07Z WARNING a: drain is slow\n")
    }

    @Test func theETAFollowsThePaceOfFinishedNodes() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var board = ProgressBoard(mode: .lines, started: start)
        let waiting = [Self.move("f0", "a", "pending", .waiting), Self.move("f1", "b", "pending", .waiting), Self.move("f2", "c", "pending", .waiting)]
        _ = board.update(waiting, at: start)
        #expect(board.estimatedSecondsLeft(waiting, at: start) == nil, "no pace before a node finished")
        _ = board.update([Self.move("f0", "a", "draining", .working), waiting[1], waiting[2]], at: start.addingTimeInterval(10))
        let afterOne = [Self.move("f0", "a", "done", .done), Self.move("f1", "b", "cordoning", .working), waiting[2]]
        _ = board.update(afterOne, at: start.addingTimeInterval(70))
        // a took 60 s; b has just started (60 s left), c waits (60 s).
        #expect(board.estimatedSecondsLeft(afterOne, at: start.addingTimeInterval(70)) == 120)
        #expect(board.estimatedSecondsLeft(afterOne, at: start.addingTimeInterval(100)) == 90)
    }

    @Test func onATerminalTheTableIsRedrawnInPlace() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var board = ProgressBoard(mode: .terminal, started: start)
        let first = board.update([Self.move("f0", "node-a", "installing", .working)], at: start.addingTimeInterval(1))
        #expect(!first.contains("\u{1B}["), "nothing to erase the first time")
        #expect(first.contains("0/1 done") && first.contains("node-a") && first.contains("installing"))
        let second = board.update([Self.move("f0", "node-a", "done", .done)], at: start.addingTimeInterval(31))
        #expect(second.hasPrefix("\u{1B}[2F\u{1B}[J"), "moves up over the two lines drawn before")
        #expect(second.contains("1/1 done") && second.contains("0:30"))
    }
}
