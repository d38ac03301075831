import UpkeepCore

/// A datastore backup before the first server of each hop is touched, taken at the minor the
/// hop leaves, so every hop can be undone (docs/backups.md; https://docs.k3s.io/upgrades/roll-back).
extension RolloutEngine {
    /// Called by the gate of the current wave: nil when no backup is needed before it or the
    /// hop's backup is taken (the gate goes on); otherwise whether anything changed while the
    /// gate waits for it. A backup that cannot be taken blocks before the hop touches anything.
    mutating func snapshotBeforeHop(_ now: Instant, _ out: inout [Action]) -> Bool? {
        guard policy.takesHopSnapshots, cursor < plan.waveCount else { return nil }
        let wave = plan.wave(cursor)
        guard wave.role == .server, plan.waves.firstIndex(where: { $0.hop == wave.hop && $0.role == .server }) == cursor,
              let first = wave.steps.first else { return nil }
        if let existing = snapshots?.first(where: { $0.hop == wave.hop }) {
            switch existing.state {
            case .taken:
                return nil
            case .taking:
                return false
            case .failed:
                stop(.blocked("hop \(wave.hop): the datastore backup before its first server failed on \(existing.node): "
                              + "\(existing.message ?? "no reason given"); nothing of the hop was touched. Fix it and run "
                              + "`upkeep resume`, or abandon this rollout and apply again with --skip-backup (the hop then cannot be restored)"), &out)
                return true
            }
        }
        let snapshot = HopSnapshot(hop: wave.hop, node: first.node, version: first.from, backupID: "\(rolloutID)-h\(wave.hop)")
        snapshots = (snapshots ?? []) + [snapshot]
        requestSnapshot(snapshot, now, &out)
        return true
    }

    private mutating func requestSnapshot(_ snapshot: HopSnapshot, _ now: Instant, _ out: inout [Action]) {
        out.append(.notice(Notice(.info, node: snapshot.node, "hop \(snapshot.hop): taking datastore backup \(snapshot.backupID) at "
                                      + "\(snapshot.version) before the hop's first server")))
        let command = AgentCommand.backup(backupID: snapshot.backupID, hop: snapshot.hop, version: snapshot.version)
        queue(AgentRequest(operationID: snapshot.operationID(rolloutID), node: snapshot.node, command: command),
              owner: .snapshot(hop: snapshot.hop), now)
    }

    mutating func snapshotReplied(_ hop: Int, _ reply: AgentReply, _ now: Instant, _ out: inout [Action]) {
        guard let index = snapshots?.firstIndex(where: { $0.hop == hop }), var snapshot = snapshots?[index] else { return }
        switch reply {
        case .backedUp(let backupID):
            snapshot.state = .taken
            snapshot.backupID = backupID
            snapshot.takenAt = now
            out.append(.notice(Notice(.info, node: snapshot.node, "hop \(hop): datastore backup \(backupID) taken at \(snapshot.version)")))
            // The gate's wait starts now, not when the backup was asked for.
            if cursor < waves.count, !waves[cursor].gatePassed { openGate(cursor, now) }
        case .refused(let code, let message):
            snapshot.state = .failed
            snapshot.message = "\(code): \(message)"
        default:
            snapshot.state = .failed
            snapshot.message = "unexpected answer \(reply)"
        }
        snapshots?[index] = snapshot
    }

    /// The agent restarted while it took the backup and left it undone: no verdict; asked again
    /// under the next attempt, at most `requestTriesMax` times in a row, then it counts as failed.
    mutating func snapshotInterrupted(_ hop: Int, _ message: String, _ now: Instant, _ out: inout [Action]) {
        guard let index = snapshots?.firstIndex(where: { $0.hop == hop }), var snapshot = snapshots?[index] else { return }
        let count = (snapshot.interruptions ?? 0) + 1
        guard count < policy.requestTriesMax else {
            return snapshotReplied(hop, .refused(code: AgentReply.interruptedCode, message: "the agent restarted \(count) times during the backup: \(message)"), now, &out)
        }
        out.append(.notice(Notice(.warning, node: snapshot.node, "the agent restarted during the backup of hop \(hop); asking again")))
        snapshot.interruptions = count
        snapshot.attempt += 1
        snapshots?[index] = snapshot
        requestSnapshot(snapshot, now, &out)
    }

    /// `resume` asks again, under the next attempt, for a backup that failed.
    mutating func resumeSnapshots(_ now: Instant, _ out: inout [Action]) {
        guard let all = snapshots else { return }
        for (index, snapshot) in all.enumerated() where snapshot.state == .failed {
            var retry = snapshot
            retry.attempt += 1
            retry.state = .taking
            retry.message = nil
            snapshots?[index] = retry
            requestSnapshot(retry, now, &out)
        }
    }

    /// The snapshot taken before `hop`, if one was.
    func snapshot(before hop: Int) -> RestoreSnapshot? { snapshots?.first { $0.hop == hop }?.restorable }
}

/// One hop as `status`, `history` and `report` show it: how it is undone, its snapshot, and
/// whether it was undone.
public struct HopStatus: Codable, Equatable, Sendable {
    public var hop: Int
    public var version: K3sVersion
    public var rollbackKind: RollbackKind
    /// The snapshot taken before it, if one was.
    public var snapshot: RestoreSnapshot?
    public var undone: Bool

    /// `hop 2 to v1.32.0+k3s1: rollback restore, snapshot r1-h2 (Sat 2026-12-05 10:00 UTC)`.
    public var line: String {
        var text = "hop \(hop) to \(version): rollback \(rollbackKind.rawValue)"
        if let snapshot { text += ", snapshot \(snapshot.backupID) (\(MaintenanceWindowClock.text(snapshot.takenAt)))" }
        else if rollbackKind == .restore { text += ", no snapshot" }
        return text + (undone ? ", undone" : "")
    }
}

extension RolloutEngine {
    public var hopStatus: [HopStatus] {
        let undone = Set(undoneHops ?? [])
        return plan.hops.map { hop in
            HopStatus(hop: hop.number, version: hop.version, rollbackKind: hop.rollbackKind, snapshot: snapshot(before: hop.number),
                      undone: undone.contains(hop.number))
        }
    }
}
