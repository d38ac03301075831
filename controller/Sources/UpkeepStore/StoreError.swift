import UpkeepRollout
import UpkeepCore

/// What can go wrong with the controller's state database, each in words that say what to do.
/// Operators cause these (a second controller, a stale directory, a newer database); bugs do not
/// end up here.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The state directory could not be created or made private.
    case stateDirectory(path: String, reason: String)
    /// SQLite could not open or migrate the database.
    case cannotOpen(path: String, reason: String)
    /// Another process held the database (a write lock) beyond the busy timeout.
    case locked(path: String?)
    /// The database was migrated by a newer Upkeep than this one.
    case newerSchema(path: String)
    /// Another controller holds the lease and it has not expired.
    case leaseHeld(holder: String, until: Instant)
    /// This controller no longer holds the lease: it expired, or another controller took it over.
    case leaseLost(holder: String, current: String?)
    case unknownRollout(String)
    case rolloutExists(String)
    /// A rollout that has not finished already exists; only one runs at a time.
    case unfinishedRollout(id: String, status: String)
    /// The rollout finished; there is nothing to resume.
    case rolloutFinished(id: String, outcome: String)
    /// `resume` without an id, and every rollout has finished.
    case nothingToResume
    /// `rollback --restore` cannot undo a hop of this rollout; the text says why and what to do.
    case restoreRefused(String)
    /// A saved value (engine state, plan) could not be decoded.
    case unreadable(what: String, reason: String)
    /// Rebuilding a rollout's engine from its snapshot and the events recorded after it did not
    /// give what was recorded at transition `sequence`: this upkeep's engine decides otherwise
    /// than the one that recorded it.
    case replayDiverged(rolloutID: String, sequence: Int, recorded: String, replayed: String)
    /// Any other SQLite failure (disk full, I/O error, lock held beyond the busy timeout).
    case database(String)

    /// Refused before the rollout ran at all (another holder, nothing to run, a refusal).
    public var meansNotDriven: Bool {
        switch self {
        case .leaseHeld, .unfinishedRollout, .nothingToResume, .rolloutFinished, .unknownRollout, .rolloutExists, .restoreRefused: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .stateDirectory(let path, let reason):
            "state directory \(path): \(reason); create it (mode 0700, owned by the user running upkeep) or set another state dir in upkeep.yaml"
        case .cannotOpen(let path, let reason):
            "cannot open the state database \(path): \(reason); check the file and its permissions, or move it away to start afresh (history is lost)"
        case .locked(let path):
            "the state database\(path.map { " \($0)" } ?? "") is locked by another process (another upkeep command, or a tool holding it "
                + "open) for more than \(Int(StateStore.busyTimeoutSeconds)) s; wait for it to finish, then retry (`fuser` on the file names it)"
        case .newerSchema(let path):
            "the state database \(path) was written by a newer upkeep; run that version (or newer) instead"
        case .leaseHeld(let holder, let until):
            "another controller (holder \(holder)) holds the lease until \(until.utcDescription); "
                + "wait for it to finish or for the lease to expire, or use --force-takeover if that controller is gone"
        case .leaseLost(let holder, let current):
            "this controller (\(holder)) no longer holds the lease"
                + (current.map { "; \($0) holds it now" } ?? "; it expired")
                + "; stopped without acting further, run `upkeep status` to see who carries on"
        case .unknownRollout(let id):
            "no rollout \(id) in the state database; `upkeep history` lists the rollouts"
        case .rolloutExists(let id):
            "a rollout \(id) already exists; choose another id"
        case .unfinishedRollout(let id, let status):
            "rollout \(id) has not finished (\(status)); run `upkeep resume` to carry it on before starting another"
        case .rolloutFinished(let id, let outcome):
            "rollout \(id) already finished (\(outcome)); nothing to resume"
        case .restoreRefused(let why):
            "no restore: \(why)"
        case .nothingToResume:
            "no unfinished rollout to resume; `upkeep history` lists past rollouts, `upkeep apply` starts a new one"
        case .unreadable(let what, let reason):
            "cannot read the saved \(what): \(reason); it may have been written by another upkeep version"
        case .replayDiverged(let id, let sequence, let recorded, let replayed):
            "rollout \(id) cannot be rebuilt from its saved state: replaying transition \(sequence) gave \"\(replayed.prefix(300))\" where "
                + "\"\(recorded.prefix(300))\" was recorded, so this upkeep's engine decides otherwise than the one that ran it; "
                + "carry it on with the upkeep version that ran it (a run that ends leaves a state any version reads)"
        case .database(let message):
            "state database error: \(message)"
        }
    }
}
