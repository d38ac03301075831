import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

/// Rolling back across a minor the way k3s supports it (#15; https://docs.k3s.io/upgrades/roll-back,
/// https://docs.k3s.io/datastore/backup-restore): the hop's datastore snapshot restored with the
/// old binary on one server, the other servers cleared and rejoined, then the agents. The sandbox's
/// servers run real etcd members (or kine over a real SQLite `state.db`), so what comes back is
/// what the snapshot held: kubectl and etcdctl are the witnesses.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RestoreEndToEndTests {
    static let start = EndToEndTests.start
    static let next = EndToEndTests.nextMinor
    /// A restore drains every node at once; a PodDisruptionBudget (the sandbox's `web`, Longhorn's
    /// instance managers) can then never allow its eviction, since no node takes the pod. Those
    /// drains are bounded by `restoreDrainTimeoutSeconds` (its default, 60 s), not by the rollout's
    /// drain timeout, which is Upkeep's default 900 s here: a restore that waited for it would run
    /// past every bound below.
    static let policy = EndToEndSandbox.policy.replacingOccurrences(of: "drainTimeoutSeconds: 60", with: "drainTimeoutSeconds: 900")

    @Test func threeEtcdServersRollBackAcrossAMinorByRestoringTheHopSnapshot() async throws {
        try await EndToEndSandbox.with(servers: 3, agents: 2, k3sVersion: Self.start, policy: Self.policy) { sandbox in
            var upgraded: Set<String> = []
            try await upgradeThenRestore(sandbox) { upgraded = try await sandbox.etcdMembers().clusterIDs }
            let restored = try await sandbox.expectThreeStartedMembersOfOneCluster()
            // A cluster restored from a snapshot is a new one (https://etcd.io/docs/v3.4/op-guide/recovery/).
            #expect(upgraded.count == 1 && restored != upgraded, "the cluster before the restore \(upgraded), after it \(restored)")
        }
    }

    @Test func oneSQLiteServerRollsBackAcrossAMinorByRestoringTheHopSnapshot() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start, policy: Self.policy) { sandbox in
            try await upgradeThenRestore(sandbox)
        }
    }

    /// `policy.autoRollback: restore`: server-2's new k3s never becomes healthy after server-1 ran
    /// the new minor healthy (its agent's revert then meets a datastore the new minor wrote), so
    /// the engine restores the hop's snapshot on its own. B, written at the new minor while
    /// server-2's install waits out its health timeout, is gone with it.
    @Test func underTheRestorePolicyALaterServerFailingLeadsToAnAutomaticRestore() async throws {
        let policy = Self.policy.replacingOccurrences(of: "autoRollback: true", with: "autoRollback: restore")
        try await EndToEndSandbox.with(servers: 3, agents: 1, k3sVersion: Self.start, policy: policy) { sandbox in
            try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-a", "--from-literal=written=before-the-upgrade"])
            try await sandbox.fault(["server-2", "unhealthy"])
            let apply = try sandbox.start(["apply", "--to", Self.next, "--yes"])
            _ = try await apply.waitForPhase("server-1", "done", timeoutSeconds: 120)
            try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-b", "--from-literal=written=at-the-new-minor"])
            let code = await apply.exitCode(timeoutSeconds: 240)
            #expect(code == 1 && apply.output.contains("failed and rolled back: hop 1 failed:") && apply.output.contains("server-2"),
                    "apply should fail on server-2 and restore:\n\(apply.output)")
            try await expectRestored(sandbox, "after the automatic restore", causeBeginning: "hop 1 failed:")
            try await sandbox.expectThreeStartedMembersOfOneCluster()
        }
    }

    /// `upkeep recover --from-backup ID` through the agents alone: a backup taken with A, an
    /// upgrade, B; then k3s stopped on every server and every `server/db` deleted, so the API has
    /// no datastore left. The recovery restores the backup on one server, rejoins the others and
    /// brings the agent back to the backup's version.
    @Test func recoverFromABackupBringsBackAClusterWhoseServersWereStoppedAndWiped() async throws {
        try await EndToEndSandbox.with(servers: 3, agents: 1, k3sVersion: Self.start, policy: Self.policy) { sandbox in
            try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-a", "--from-literal=written=before-the-backup"])
            let backup = try await sandbox.controller(["backup", "now"], timeoutSeconds: 120)
            try #require(backup.status == 0, "backup now failed:\n\(backup.output)")
            let id = try #require(try await sandbox.backups().first?.id, "backup now recorded nothing")
            let apply = try await sandbox.controller(["apply", "--to", Self.next, "--yes"], timeoutSeconds: 240)
            try #require(apply.status == 0, "apply should complete:\n\(apply.output)")
            try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-b", "--from-literal=written=after-the-backup"])

            for server in sandbox.manifest.nodes where server.isServer {
                let stop = try await ProcessRun.run(server.systemctl, ["stop", server.unit], timeoutSeconds: 60)
                try #require(stop.status == 0, "systemctl stop on \(server.name) failed: \(stop.output)")
                try FileManager.default.removeItem(atPath: "\(server.dataDir)/server/db")
            }
            let recover = try await sandbox.controller(["recover", "--from-backup", id, "--yes"], timeoutSeconds: 240)
            #expect(recover.status == 0 && recover.output.contains("done: recovered from datastore backup \(id)"),
                    "recover should complete:\n\(recover.output)")
            // It says what it does: the restore's steps and nodes, not an empty plan's headline.
            #expect(recover.output.contains("starts: restore datastore backup \(id) (at \(Self.start)) through the agents: stop k3s on 3 servers, restore on ")
                    && recover.output.contains("clear their datastore and rejoin") && !recover.output.contains(" hops ("), "\(recover.output)")
            let told = recover.output.split(separator: "\n").filter { $0.contains("restores it with") || $0.contains("starts: ") }
            #expect(told.count == 2 && told.allSatisfy { !$0.hasSuffix(" ") }, "\(told)")
            // With the API down the cluster Lease cannot be taken, and the output says what fences it instead.
            #expect(recover.output.contains("the cluster Lease is not taken, and only this state directory's lease fences this recover"),
                    "\(recover.output)")
            let holder = try await sandbox.clusterLease()?["holderIdentity"] as? String ?? ""
            #expect(holder.isEmpty, "the Lease is not left held: \(holder)")
            try await sandbox.expectAllNodes(at: Self.start, "after the recovery", timeoutSeconds: 60)
            #expect(try await sandbox.configMapExists("upkeep-e2e-a"), "A was in the backup and must be back")
            #expect(try await !sandbox.configMapExists("upkeep-e2e-b"), "B was written after the backup and must be gone")
            try await sandbox.expectThreeStartedMembersOfOneCluster()
            let history = try await sandbox.history()
            guard let newest = history.first, newest.id.hasPrefix("v"), case .rolledBack(let cause)? = newest.outcome else {
                Issue.record("history should show the recovery, finished: \(history.map { "\($0.id) \($0.status)" })")
                return
            }
            #expect(cause.hasPrefix("recovered from datastore backup \(id)"), "\(cause)")
        }
    }

    /// kill -9 of the controller in the middle of `rollback --restore`: once k3s is stopped on
    /// every server (its own notice), or once the restoring server's agent began the restore (its
    /// journal). `upkeep resume --force-takeover` (the dead controller's lease still lasts) sends
    /// the unanswered requests again under their ids and finishes the restore; no agent began any
    /// operation twice.
    @Test(arguments: [KillPoint.serversStopped, .restoreBegan])
    func aControllerKilledDuringARestoreIsResumedToTheRestoredCluster(at point: KillPoint) async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start, policy: Self.policy) { sandbox in
            try await upgradeAcrossAMinor(sandbox)
            let rollback = try sandbox.start(["rollback", "--restore", "--yes"])
            switch point {
            case .serversStopped:
                _ = try await rollback.waitForLine("k3s stopped on every server", timeoutSeconds: 180) { $0.contains("k3s stopped on every server") }
            case .restoreBegan:
                _ = try await sandbox.waitForJournalStep("server-1", of: "restore", "datastoreChanged", timeoutSeconds: 180)
            }
            await rollback.killHard()
            #expect(!rollback.output.contains("done:"), "the controller finished before it was killed:\n\(rollback.output)")

            let resume = try await sandbox.controller(["resume", "--force-takeover"], timeoutSeconds: 240)
            #expect(resume.status == 0, "resume should finish the restore:\n\(resume.output)")
            try await expectRestored(sandbox, "after the resume", causeBeginning: "the operator undid hop 1")
            try sandbox.expectNothingRanTwice()
        }
    }

    enum KillPoint: String, CustomStringConvertible, Sendable {
        case serversStopped, restoreBegan
        var description: String { rawValue }
    }

    /// kill -9 of the restoring server's agent after the restore changed its datastore and while
    /// the restored k3s starts (slowly, by a fault): the sandbox's systemd stand-in restarts the
    /// agent, which carries on the restore it had begun (the same id, once) to a healthy k3s.
    @Test func theRestoringServersAgentKilledAfterTheDatastoreChangeFinishesTheRestore() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start, policy: Self.policy) { sandbox in
            try await upgradeAcrossAMinor(sandbox)
            try await sandbox.fault(["server-1", "slow-start", "4"])
            let before = try #require(try sandbox.agentPID("server-1"), "server-1's agent has no pid file")
            let rollback = try sandbox.start(["rollback", "--restore", "--yes"])
            let restore = try await sandbox.waitForJournalStep("server-1", of: "restore", "restarting", timeoutSeconds: 180)
            #expect(sandbox.journalLines("server-1").contains { $0.contains(restore) && $0.contains("{\"datastoreChanged\":") },
                    "server-1's restore restarts k3s before its journal records the datastore change")
            #expect(kill(before, SIGKILL) == 0, "could not kill server-1's agent (pid \(before))")

            let code = await rollback.exitCode(timeoutSeconds: 240)
            #expect(code == 0 && rollback.output.contains("done: the operator undid hop 1 (`upkeep rollback --restore`)"),
                    "rollback --restore should complete:\n\(rollback.output)")
            try await expectRestored(sandbox, "after the agent's restart", causeBeginning: "the operator undid hop 1")
            let after = try sandbox.agentPID("server-1")
            #expect(after != nil && after != before, "server-1's agent was not restarted (pid \(String(describing: after)))")
            let restores = try sandbox.journalOperationIDs("server-1").filter { $0.contains(":restore:") }
            #expect(restores == [restore], "server-1 should have run \(restore) only: \(restores)")
            try sandbox.expectNothingRanTwice()
        }
    }

    /// ConfigMap A, the upgrade across a minor, ConfigMap B: every node at the new version.
    private func upgradeAcrossAMinor(_ sandbox: EndToEndSandbox) async throws {
        try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-a", "--from-literal=written=before-the-upgrade"])
        let apply = try await sandbox.controller(["apply", "--to", Self.next, "--yes"], timeoutSeconds: 240)
        try #require(apply.status == 0, "apply should complete:\n\(apply.output)")
        try await sandbox.expectAllNodes(at: Self.next, "after the upgrade")
        try await sandbox.kubectl(["create", "configmap", "upkeep-e2e-b", "--from-literal=written=after-the-upgrade"])
        #expect(try await sandbox.configMapExists("upkeep-e2e-b"), "B was written at the new minor")
    }

    /// `upgradeAcrossAMinor` (then `afterUpgrade`), `rollback --restore`: every node back at the old
    /// version and Ready, A there, B gone, no received backup left on a server, and the pods a
    /// PodDisruptionBudget kept from the all-at-once drain named in the output.
    private func upgradeThenRestore(_ sandbox: EndToEndSandbox, afterUpgrade: () async throws -> Void = {}) async throws {
        try await upgradeAcrossAMinor(sandbox)
        try await afterUpgrade()

        let rollback = try await sandbox.controller(["rollback", "--restore", "--yes"], timeoutSeconds: 240)
        #expect(rollback.status == 0 && rollback.output.contains("done: the operator undid hop 1 (`upkeep rollback --restore`)"),
                "rollback --restore should complete:\n\(rollback.output)")
        #expect(rollback.output.contains("did not finish within \(RolloutPolicy.restoreDrainTimeoutDefault) s")
                && rollback.output.contains("a PodDisruptionBudget still forbids its eviction"),
                "the restore's drain should name the pods a budget kept:\n\(rollback.output)")
        try await expectRestored(sandbox, "after rollback --restore", causeBeginning: "the operator undid hop 1")
    }

    /// Every node Ready at `start`, A back and B gone (kubectl), no received backup left on a
    /// server, and the newest rollout rolled back by restoring its first hop's snapshot, for
    /// `causeBeginning`.
    private func expectRestored(_ sandbox: EndToEndSandbox, _ context: String, causeBeginning: String) async throws {
        try await sandbox.expectAllNodes(at: Self.start, context, timeoutSeconds: 60)
        #expect(try await sandbox.configMapExists("upkeep-e2e-a"), "\(context): A was in the snapshot and must be back")
        #expect(try await !sandbox.configMapExists("upkeep-e2e-b"), "\(context): B was written after the snapshot and must be gone")
        for node in sandbox.manifest.nodes where node.isServer {
            let received = (try? FileManager.default.contentsOfDirectory(atPath: "\(node.agentDataDir)/restore")) ?? []
            #expect(received.filter { !$0.hasPrefix(".") }.isEmpty, "\(node.name) keeps received backups after the restore: \(received)")
        }
        let history = try await sandbox.history()
        let id = history.first?.id ?? "?"
        guard case .rolledBack(let cause)? = history.first?.outcome else {
            Issue.record("\(context): history should show the rollout rolled back: \(history.map { "\($0.id) \($0.status)" })")
            return
        }
        #expect(cause.hasPrefix(causeBeginning) && cause.contains("undone by restoring datastore backup \(id)-h1")
                && cause.contains("at \(Self.start)"), "\(context): \(cause)")
    }
}

extension EndToEndSandbox {
    /// `kubectl --kubeconfig DIR/kubeconfig ARGUMENTS`; must succeed.
    func kubectl(_ arguments: [String]) async throws {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig"] + arguments, timeoutSeconds: 30)
        try #require(outcome.status == 0, "kubectl \(arguments.joined(separator: " ")) failed: \(outcome.output)")
    }

    /// Whether `kubectl get configmap NAME` finds it (NotFound is false; any other failure throws).
    func configMapExists(_ name: String, namespace: String = "default") async throws -> Bool {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "-n", namespace, "get", "configmap", name, "-o", "name"],
                                               timeoutSeconds: 30)
        if outcome.status == 0 { return true }
        try #require(outcome.output.contains("NotFound"), "kubectl get configmap \(name) failed: \(outcome.output)")
        return false
    }

    /// What `etcdctl member list` says at each server's client URL.
    struct EtcdMembers {
        /// The cluster id each endpoint answered with.
        var clusterIDs: Set<String>
        /// The started members, by the node their name begins with (k3s names members `<node>-<hex>`).
        var started: [String]
        /// How many members (started or not) each server's endpoint lists.
        var counts: [String: Int]
        var listed: String
    }

    /// Expects every server's etcd member to list the same three started members, one of each
    /// server (none unstarted); returns the cluster id they answer with.
    @discardableResult
    func expectThreeStartedMembersOfOneCluster() async throws -> Set<String> {
        let members = try await etcdMembers()
        #expect(members.clusterIDs.count == 1 && members.started == ["server-1", "server-2", "server-3"]
                && members.counts.values.allSatisfy { $0 == 3 }, "three started members of one cluster: \(members.clusterIDs) \(members.listed)")
        return members.clusterIDs
    }

    /// `etcdctl member list` against every server's client URL, one at a time (each must answer).
    func etcdMembers() async throws -> EtcdMembers {
        var clusterIDs: Set<String> = []
        var started: Set<String> = []
        var counts: [String: Int] = [:]
        var listed = ""
        for server in manifest.nodes where server.isServer {
            let outcome = try await ProcessRun.run("etcdctl", ["--endpoints", server.datastoreURL, "--dial-timeout", "5s", "member", "list", "-w", "json"],
                                                   environment: ["ETCDCTL_API": "3"], timeoutSeconds: 30)
            try #require(outcome.status == 0, "etcdctl member list at \(server.datastoreURL) failed: \(outcome.output)")
            let object = try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any]
            // The id is a uint64 that a Double would round: read it from the text.
            if let range = outcome.output.range(of: #""cluster_id":\s*[0-9]+"#, options: .regularExpression) {
                clusterIDs.insert(String(outcome.output[range].filter(\.isNumber)))
            }
            for member in object?["members"] as? [[String: Any]] ?? [] {
                let name = member["name"] as? String ?? ""
                let clients = member["clientURLs"] as? [String] ?? []
                listed += "\(server.name) sees \(name.isEmpty ? "(unstarted)" : name) \(clients); "
                // An unstarted member has no name and no client URLs yet (etcdctl prints "unstarted").
                guard !name.isEmpty, !clients.isEmpty, let node = manifest.nodes.first(where: { name.hasPrefix("\($0.name)-") || name == $0.name }) else { continue }
                started.insert(node.name)
            }
            counts[server.name] = (object?["members"] as? [[String: Any]] ?? []).count
        }
        return EtcdMembers(clusterIDs: clusterIDs, started: started.sorted(), counts: counts, listed: listed)
    }
}
