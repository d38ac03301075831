import UpkeepRollout
import UpkeepCore

/// One rollout as `upkeep history` lists it: when, from what to what, how it ended, and what
/// happened to each node. Read from the store; never written back.
public struct RolloutRecord: Codable, Equatable, Sendable {
    public var id: String
    public var createdAt: Instant
    public var startedAt: Instant?
    public var finishedAt: Instant?
    /// The versions the plan starts from, e.g. `v1.30.6+k3s1 (3 nodes), v1.29.9+k3s1 (1 node)`.
    public var from: String
    public var target: K3sVersion
    /// The engine's status as last persisted (`finished` carries the outcome).
    public var status: RolloutEngine.Status
    /// Per node and direction: plan steps first, then the ways back in the order they ran.
    public var steps: [StepRecord]
    /// The operation that made it (apply, rollback or recover) and who started it; nil for
    /// rollouts recorded before Upkeep kept this (later operations are in `RolloutDetail`).
    public var startedBy: OperationEntry?

    public var outcome: RolloutOutcome? {
        if case .finished(let outcome) = status { outcome } else { nil }
    }
}

/// One node's move within a rollout, with the moments it started and finished.
public struct StepRecord: Codable, Equatable, Sendable {
    public var progress: MoveProgress
    /// When the move first left `waiting`.
    public var startedAt: Instant?
    /// When it last reached a finished state (cleared again if a resume restarts it).
    public var finishedAt: Instant?

    public var node: String { progress.node }
}

/// A notice as it was shown, with its moment.
public struct NoticeRecord: Codable, Equatable, Sendable {
    /// The transition that produced it.
    public var sequence: Int
    public var at: Instant
    public var notice: Notice
}

/// One persisted engine transition: the event handled and the actions it returned.
public struct TransitionRecord: Codable, Equatable, Sendable {
    /// 1, 2, 3, … within the rollout.
    public var sequence: Int
    public var at: Instant
    public var event: String
    public var actions: String
}

/// Everything stored about one rollout, for `upkeep history <id>` and `upkeep status`.
public struct RolloutDetail: Codable, Equatable, Sendable {
    public var record: RolloutRecord
    public var plan: Plan
    public var policy: RolloutPolicy
    public var notices: [NoticeRecord]
    public var transitionCount: Int
    /// Every operation on it, oldest first: the one that made it, then resumes, restores, an abandon.
    public var operations: [OperationEntry]
}

/// What the store needs to record one engine transition: what changed, not the whole engine.
public struct Transition: Sendable {
    /// The engine after `handle`.
    public var engine: RolloutEngine
    public var event: String
    public var actions: String
    public var notices: [Notice]
    /// The moves whose progress differs from the engine before `handle` (all when unknown).
    public var changedSteps: [MoveProgress]
    /// What operators are told of this transition (none when `before` is unknown); recorded in
    /// the notification outbox with it.
    public var milestones: [RolloutMilestone]
    /// The event as resume replays it; nil when only its words are known, and then the store
    /// keeps a snapshot of the whole engine with this transition instead.
    var replayable: RecordedEvent?
    /// The position of each of `changedSteps` in the engine's progress.
    var changedOrdinals: [Int]

    /// `before` is the engine `event` was handled by, returning `actions`; what a resume needs
    /// to replay it is recorded with it, so the engine itself is written only now and then.
    public init(engine: RolloutEngine, before: RolloutEngine, event: RolloutEngine.Event, actions: [RolloutEngine.Action], notices: [Notice]) {
        self.engine = engine
        self.event = TransitionLog.describe(event)
        self.actions = TransitionLog.describe(actions)
        self.notices = notices
        let changed = engine.progressChanged(since: before)
        changedSteps = changed.map(\.step)
        changedOrdinals = changed.map(\.ordinal)
        milestones = engine.milestones(since: before)
        replayable = RecordedEvent(event, before: before.latestObservation)
    }

    /// A transition known by its words alone (`before` nil: every step counts as changed); the
    /// store snapshots the whole engine with it, since it cannot be replayed.
    public init(engine: RolloutEngine, before: RolloutEngine?, event: String, actions: String, notices: [Notice]) {
        self.engine = engine
        self.event = event
        self.actions = actions
        self.notices = notices
        let now = engine.progress
        let then = before?.progress ?? []
        let changed = now.indices.filter { index in !(index < then.count && then[index] == now[index]) }
        changedSteps = changed.map { now[$0] }
        changedOrdinals = changed
        milestones = engine.milestones(since: before)
    }
}

/// The controller lease: who may drive rollouts until when.
public struct Lease: Codable, Equatable, Sendable {
    public var holder: String
    public var acquiredAt: Instant
    public var expiresAt: Instant
    public var ttlMilliseconds: Int64
}
