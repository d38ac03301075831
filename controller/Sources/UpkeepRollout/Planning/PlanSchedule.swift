import UpkeepCore

/// The schedule a plan is predicted to run on: every node starting as soon as `Admission`
/// allows (the engine's rule), with estimated step times, beside the length the same plan would
/// take with a barrier after every wave. `upkeep plan` shows its length and critical path;
/// `plan -o json` carries it as `schedule`. A prediction, never an input to the engine: the
/// engine admits nodes from what it observes. Pure; it never reads a clock.
public struct PlanSchedule: Codable, Equatable, Sendable {
    /// The step times the prediction assumes: documented defaults (docs/planning.md,
    /// "Scheduling"), or the caller's (bench/rollout-overhead passes the sandbox's).
    public struct Estimates: Codable, Equatable, Sendable {
        /// Cordon to uncordon for one node: drain, install, k3s healthy and Ready.
        public var stepSeconds: Int
        /// After the uncordon, until a node holding a replica of an attached volume has it healthy again.
        public var rebuildSeconds: Int

        public static let defaults = Estimates(stepSeconds: 240, rebuildSeconds: 180)

        public init(stepSeconds: Int, rebuildSeconds: Int) {
            self.stepSeconds = stepSeconds
            self.rebuildSeconds = rebuildSeconds
        }
    }

    /// One node's predicted step, in seconds from the rollout's start.
    public struct Entry: Codable, Equatable, Sendable {
        public var node: String
        /// `hop 1 w2`, as the engine's notices name the wave.
        public var wave: String
        public var startSeconds: Int
        /// Back and uncordoned: its slot is free again.
        public var upSeconds: Int
        /// Its replicas rebuilt: it no longer counts against a volume's healthy replicas.
        public var endSeconds: Int
        /// The node whose step ending let this one start; nil for a start at the beginning.
        public var after: String?
    }

    public var estimates: Estimates
    public var entries: [Entry]
    /// The predicted length, without wave barriers.
    public var seconds: Int
    /// The length of the same plan with each wave starting only once the previous one has ended.
    public var waveBarrierSeconds: Int
    /// The chain of nodes, first to last, each started by the one before it ending: what the
    /// length is made of. Shorten one of them and the rollout gets shorter.
    public var criticalPath: [String]

    /// `plan` over `inventory` (the cluster it was made for): its volumes' protected replicas as now.
    public static func predict(_ plan: Plan, inventory: ClusterInventory, estimates: Estimates = .defaults) -> PlanSchedule {
        var predictor = Predictor(plan: plan, inventory: inventory, estimates: estimates)
        predictor.run()
        return predictor.schedule
    }
}

/// List scheduling in plan order under `Admission`, walking the waves as the engine does: a
/// span of overlapping waves, each opened once every node before it has started.
private struct Predictor {
    let plan: Plan
    let waves: [Wave]
    let estimates: PlanSchedule.Estimates
    var entries: [PlanSchedule.Entry] = []
    let protected: [(name: String, nodes: Set<String>)]
    /// Nodes holding a replica of an attached volume: they rebuild after coming back.
    let rebuilds: Set<String>

    init(plan: Plan, inventory: ClusterInventory, estimates: PlanSchedule.Estimates) {
        self.plan = plan
        waves = plan.waves
        self.estimates = estimates
        protected = inventory.volumes.compactMap { volume in
            let nodes = Set(volume.protectedNodes)
            return nodes.count >= 2 ? (volume.name, nodes) : nil
        }
        rebuilds = Set(inventory.volumes.filter { $0.state == .attached }.flatMap { $0.replicas.map(\.node) })
    }

    var schedule: PlanSchedule {
        let seconds = entries.map(\.endSeconds).max() ?? 0
        var path: [String] = []
        var byNode: [String: PlanSchedule.Entry] = [:]
        for entry in entries { byNode[entry.node] = entry }
        var link = entries.last { $0.endSeconds == seconds }
        var seen = Set<String>()
        while let entry = link, seen.insert(entry.node).inserted {
            path.append(entry.node)
            link = entry.after.flatMap { byNode[$0] }
        }
        return PlanSchedule(estimates: estimates, entries: entries, seconds: seconds, waveBarrierSeconds: waveBarrierSeconds,
                            criticalPath: path.reversed())
    }

    /// Each wave as long as its slowest node, one after the other (plus the canary soak).
    var waveBarrierSeconds: Int {
        var total = 0
        for (number, wave) in waves.enumerated() {
            total += wave.steps.map { length(of: $0.node) }.max() ?? 0
            if soaksAfter(number) { total += plan.policy.canarySoakSeconds }
        }
        return total
    }

    func length(of node: String) -> Int { estimates.stepSeconds + (rebuilds.contains(node) ? estimates.rebuildSeconds : 0) }

    /// The last canary wave of a hop: the next wave waits the soak (as the engine's gate does).
    func soaksAfter(_ wave: Int) -> Bool {
        wave + 1 < waves.count && waves[wave].isCanary && !waves[wave + 1].isCanary && plan.policy.canarySoakSeconds > 0
    }

    mutating func run() {
        var cursor = 0
        var openFrom: Int?
        var now = 0
        var notBefore = 0
        /// The node whose step ended (or freed its slot) at `now`.
        var trigger: String?
        /// Per wave: its steps not started yet, in plan order.
        var unstarted = waves.map { Array($0.steps.indices) }
        /// Entries not ended yet: every one belongs to the span.
        var live: [Int] = []
        // Bounded: every pass starts a node, opens a wave, or moves time to the next event.
        while cursor < waves.count {
            let span = (openFrom ?? cursor)...cursor
            live.removeAll { entries[$0].endSeconds <= now }
            if now >= notBefore {
                var busy = Set(live.map { entries[$0].node })
                var taken = live.filter { now < entries[$0].upSeconds }.count
                let slots = Admission.slots(waves[cursor].role, policy: plan.policy)
                admit: for wave in span {
                    var position = 0
                    while position < unstarted[wave].count {
                        guard taken < slots else { break admit }
                        let step = waves[wave].steps[unstarted[wave][position]]
                        if Admission.longhornHold(step.node, busy: busy, protected: protected) != nil {
                            position += 1
                            continue
                        }
                        entries.append(PlanSchedule.Entry(node: step.node, wave: "hop \(waves[wave].hop) \(waves[wave].label)",
                                                          startSeconds: now, upSeconds: now + estimates.stepSeconds,
                                                          endSeconds: now + length(of: step.node), after: now == 0 ? nil : trigger))
                        live.append(entries.count - 1)
                        unstarted[wave].remove(at: position)
                        busy.insert(step.node)
                        taken += 1
                    }
                }
            }
            // Open the next wave, or move past a finished span.
            if unstarted[cursor].isEmpty, cursor + 1 < waves.count, Admission.mayOverlap(waves[cursor], waves[cursor + 1]) {
                openFrom = openFrom ?? cursor
                cursor += 1
                continue
            }
            if span.allSatisfy({ unstarted[$0].isEmpty }) && live.isEmpty {
                if soaksAfter(cursor) { notBefore = now + plan.policy.canarySoakSeconds }
                openFrom = nil
                cursor += 1
                continue
            }
            // The next moment anything changes.
            let events = live.flatMap { [entries[$0].upSeconds, entries[$0].endSeconds] }.filter { $0 > now } + (notBefore > now ? [notBefore] : [])
            guard let next = events.min() else { preconditionFailure("schedule prediction stalled at \(now) s in wave \(cursor)") }
            now = next
            trigger = live.last { entries[$0].endSeconds == now || entries[$0].upSeconds == now }.map { entries[$0].node }
        }
    }
}

extension PlanSchedule {
    /// `schedule: about 26 min with the estimates (40 min with a barrier after every wave);
    /// critical path: agent-1 → agent-5 → agent-9`, for `upkeep plan`.
    public var summary: String {
        let shown = criticalPath.count <= 6 ? criticalPath
            : Array(criticalPath.prefix(3)) + ["… \(criticalPath.count - 5) more …"] + Array(criticalPath.suffix(2))
        return "schedule: about \(Self.minutes(seconds)) with the estimates (\(Self.minutes(waveBarrierSeconds)) with a barrier after "
            + "every wave; \(estimates.stepSeconds) s a node, \(estimates.rebuildSeconds) s a rebuild); nodes start as slots and "
            + "replicas allow\ncritical path: " + shown.joined(separator: " → ")
    }

    static func minutes(_ seconds: Int) -> String { seconds < 120 ? "\(seconds) s" : "\((seconds + 30) / 60) min" }
}
