import Foundation
import UpkeepCapture
import UpkeepCore
import UpkeepKube
import UpkeepRollout
import UpkeepStore

/// What a rehearsal found, for the terminal and for `-o json` (docs/rehearse.md). Times are the
/// twin's, multiplied by `speed`: the prediction for the live cluster.
struct RehearsalReport: Encodable {
    struct NodeTiming: Encodable, Equatable {
        var node: String
        var wave: String
        var from: String
        var to: String
        /// Seconds after the rollout started (predicted: the twin's times × speed).
        var startSeconds: Double?
        var endSeconds: Double?
        var stage: String
        /// The node's longest agent operation on the twin (its seconds × speed).
        var dominant: DominantStep?
    }

    struct HopRollback: Encodable, Equatable {
        var hop: Int
        var version: String
        var kind: String
        var meaning: String
    }

    struct WindowFit: Encodable, Equatable {
        var windows: String
        var opens: String
        var closes: String?
        var fits: Bool
    }

    struct DrillRun: Encodable {
        var failing: String
        var exitCode: Int32
        var outcome: String
        /// Predicted: the twin's seconds × speed.
        var seconds: Double
        var rolledBack: [String]
        /// Every node after the rollback: `name version Ready|NotReady[, cordoned]`.
        var nodesAfter: [String]

        /// `record`: the rollout this drill recorded (nil when apply refused and recorded none;
        /// `message` then says why).
        init(failing: String, exitCode: Int32, seconds: Double, record: RolloutRecord?, message: String? = nil, nodesAfter: [InventoryNode]) {
            self.failing = failing
            self.exitCode = exitCode
            self.seconds = seconds
            outcome = record?.outcomeText ?? message.map { "refused: \($0)" } ?? "no rollout was recorded"
            rolledBack = (record?.steps ?? []).filter { $0.progress.isRollback && $0.progress.stage == .done }.map(\.node)
            self.nodesAfter = nodesAfter.map { "\($0.name) \($0.version) " + ($0.ready ? "Ready" : "NotReady") + ($0.cordoned ? ", cordoned" : "") }
        }
    }

    var target: String
    var speed: Double
    /// The live cluster's step times the twin played (divided by `speed`).
    var steps: RehearsalRun.StepTimes
    var capturedAt: String
    var server: String
    var plan: Plan?
    var nodes: [NodeTiming] = []
    var totalSeconds: Double?
    var window: WindowFit?
    var holds: [DisruptionHold] = []
    var volumes: [VolumeSafety] = []
    var rollbacks: [HopRollback] = []
    /// The configured gates as read now on the live side (not the etcd gate), and what of them
    /// would hold the first wave now. Reported; they do not change the exit code (a gate holds
    /// at the moment it is read, the window is later).
    var gates: [String] = []
    var gateHolds: [String] = []
    var outcome = "not run"
    var exitCode: Int32 = 0
    var reason: String?
    var drills: [DrillRun] = []
    /// The directory kept with `--keep`: capture.json, the twin (running), the logs.
    var kept: String?

    init(capture: ClusterCapture, target: K3sVersion, speed: Double, steps: RehearsalRun.StepTimes, kept: String?) {
        self.target = target.description
        self.speed = speed
        self.steps = steps
        capturedAt = capture.capturedAt
        server = capture.server
        self.kept = kept
    }

    /// The plan's hops, waves, the drains a budget holds and the volumes that shape the order.
    mutating func take(plan: Plan?, capture: ClusterCapture, policy: RolloutPolicy) {
        self.plan = plan
        guard let plan else { return }
        let drain = policy.drain ?? DrainPolicy()
        holds = DisruptionHold.find(in: capture, nodes: plan.waves.flatMap(\.nodes), podSelector: drain.podSelector,
                                    disableEviction: drain.disableEviction)
        volumes = VolumeSafety.find(in: capture, waves: plan.waves.map { ($0.label, $0.nodes) })
        rollbacks = plan.hops.map { hop in
            HopRollback(hop: hop.number, version: hop.version.description, kind: hop.rollbackKind.rawValue,
                        meaning: hop.rollbackKind == .restore
                            ? "raises the servers' minor: once a server is healthy at it, undoing the hop restores its datastore snapshot with the old binary"
                            : "the binaries go back")
        }
    }

    /// How the twin's rollout went: its steps' times scaled to predictions, and the exit code.
    mutating func take(run code: Int32, message: String?, record: RolloutRecord?, transitions: [TransitionRecord], wallSeconds: Double,
                       windows: [MaintenanceWindow]?, now: Instant) {
        exitCode = code
        reason = message
        if let record {
            outcome = record.outcomeText
            let origin = record.startedAt ?? record.createdAt
            func predicted(_ instant: Instant?) -> Double? {
                instant.map { Double($0.milliseconds(since: origin)) / 1000 * speed }
            }
            let dominant = DominantStep.byNode(transitions)
            nodes = record.steps.filter { !$0.progress.isRollback }.map { step in
                NodeTiming(node: step.node, wave: step.progress.wave, from: step.progress.from.description, to: step.progress.to.description,
                           startSeconds: predicted(step.startedAt), endSeconds: predicted(step.finishedAt), stage: record.phaseText(step.progress),
                           dominant: dominant[step.node].map { DominantStep(method: $0.method, seconds: $0.seconds * speed) })
            }
            totalSeconds = predicted(record.finishedAt) ?? wallSeconds * speed
        } else if plan?.waves.isEmpty == true {
            outcome = "nothing to do"
        } else {
            outcome = message.map { "refused: \($0)" } ?? "no rollout was recorded"
        }
        if code == RolloutExitCode.done, !holds.isEmpty {
            exitCode = RolloutExitCode.blocked
            reason = "a disruption budget would hold the drain of \(holds.map(\.node).joined(separator: ", "))"
        } else if code != RolloutExitCode.done, reason == nil {
            reason = "on the twin: \(outcome)"
        }
        if let windows, !windows.isEmpty, let total = totalSeconds {
            let opens = windows.nextOpen(atOrAfter: now)
            let closes = windows.closing(after: opens)
            window = WindowFit(windows: windows.listed, opens: windows.nextOpenText(atOrAfter: now),
                               closes: closes.map { MaintenanceWindowClock.text($0, in: windows.sharedZone) },
                               fits: closes.map { opens.adding(milliseconds: Int64(total * 1000)) <= $0 } ?? true)
        }
    }

    /// The drill's exit code: 0 when every failure was rolled back.
    mutating func finishDrill() {
        let bad = drills.filter { $0.exitCode != RolloutExitCode.failedRolledBack }
        outcome = "drilled \(drills.count) node(s): \(drills.count - bad.count) rolled back"
        exitCode = bad.isEmpty ? RolloutExitCode.done : RolloutExitCode.failedNotRolledBack
        reason = bad.isEmpty ? nil : "the failure of \(bad.map(\.failing).joined(separator: ", ")) was not rolled back (exit \(bad.map { String($0.exitCode) }.joined(separator: ", ")))"
    }

    func text() -> String {
        var text = "rehearsal of \(target) on a twin of \(server) (captured \(capturedAt)); twin time ran \(Self.number(speed))× faster\n"
        text += "step times: replica rebuild \(Self.number(steps.rebuildSeconds)) s, pod start \(Self.number(steps.podStartSeconds)) s, "
            + "pod termination \(Self.number(steps.podTerminationSeconds)) s\n"
        if let plan { text += "\n" + plan.table() }
        for rollback in rollbacks { text += "hop \(rollback.hop) to \(rollback.version): rollback \(rollback.kind): \(rollback.meaning)\n" }
        if !holds.isEmpty {
            text += "\ndrains a disruption budget holds:\n"
            for hold in holds {
                text += "  \(hold.node): poddisruptionbudget \(hold.budget) allows \(hold.allowed) (healthy \(hold.currentHealthy) of \(hold.desiredHealthy) needed); "
                    + "pods \(hold.pods.joined(separator: ", ")); to make room: \(hold.remedy)\n"
            }
        }
        if !volumes.isEmpty {
            text += "\nvolumes that shape the order:\n"
            for volume in volumes { text += "  \(volume.volume): \(volume.note)\n" }
        }
        if !nodes.isEmpty {
            text += "\npredicted (the twin's times × \(Self.number(speed))):\n"
            text += renderTable(["NODE", "WAVE", "FROM", "TO", "START", "END", "LONGEST STEP", "STAGE"], nodes.map {
                [$0.node, $0.wave, $0.from, $0.to, $0.startSeconds.map(Self.duration) ?? "-", $0.endSeconds.map(Self.duration) ?? "-",
                 $0.dominant.map { "\($0.method) \(Self.duration($0.seconds))" } ?? "-", $0.stage]
            })
        }
        if let totalSeconds { text += "total: \(Self.duration(totalSeconds))\n" }
        if !gates.isEmpty {
            text += "\ngates (read now on the live side; the twin runs without them):\n" + gates.map { "  \($0)\n" }.joined()
            if !gateHolds.isEmpty { text += "  they would hold the first wave now: \(gateHolds.joined(separator: "; "))\n" }
        }
        if let window {
            text += "maintenance windows \(window.windows): the next opens \(window.opens)"
            text += window.closes.map { ", closes \($0)" } ?? ""
            text += window.fits ? "; the rollout fits\n" : "; the rollout does not fit: waves not started by the close wait for the next opening\n"
        }
        for drill in drills {
            text += "\ndrill: \(drill.failing)'s new k3s fails: exit \(drill.exitCode), \(drill.outcome), \(Self.duration(drill.seconds))\n"
            if !drill.rolledBack.isEmpty { text += "  rolled back: \(drill.rolledBack.joined(separator: ", "))\n" }
            for node in drill.nodesAfter { text += "  \(node)\n" }
        }
        text += "\noutcome on the twin: \(outcome)\n"
        if let kept { text += "kept in \(kept): capture.json, the twin (kubectl --kubeconfig \(kept)/twin/kubeconfig), the logs\n" }
        return text
    }

    static func number(_ value: Double) -> String { value == value.rounded() ? String(Int(value)) : String(value) }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        return whole >= 60 ? "\(whole / 60)m\(String(format: "%02d", whole % 60))s" : "\(whole)s"
    }
}
