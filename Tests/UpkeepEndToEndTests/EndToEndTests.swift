import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepCore
import UpkeepSandbox
import UpkeepStore

/// The controller end to end: the built `upkeep` against a sandbox cluster of real processes
/// (fake k3s under a systemd stand-in, a real `upkeep-agent` on every node, mutual TLS), with
/// the real `kubectl` as the witness of the outcome.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct EndToEndTests {
    static let start = "v1.31.4+k3s1"
    /// What the sandbox's release server offers around `start`, oldest first.
    static let offered = ReleaseCatalog.k3sVersions(around: start)
    /// The sandbox's `latest` channel: its newest release, two minors above `start`.
    static let latest = offered.last { !$0.contains("-") } ?? start
    /// The oldest release of the next minor: one hop.
    static let nextMinor = offered.first { minor($0) > minor(start) } ?? start

    static func minor(_ version: String) -> Int {
        Int(version.split(separator: ".").dropFirst().first ?? "") ?? 0
    }

    @Test func aFullUpgradeOfThreeServersAndThreeAgentsAcrossTwoMinorsCompletes() async throws {
        try #require(Self.minor(Self.latest) == Self.minor(Self.start) + 2, "expected a latest two minors up: \(Self.offered)")
        try await EndToEndSandbox.with(servers: 3, agents: 3, k3sVersion: Self.start) { sandbox in
            let apply = try await sandbox.controller(["apply", "--channel", "latest", "--concurrency", "2", "--yes"], timeoutSeconds: 240)
            #expect(apply.status == 0, "apply should complete:\n\(apply.output)")
            #expect(apply.output.contains("done: every node runs its target version"), "\(apply.output)")
            #expect(apply.output.contains("post-update validation: healthy (3 checks: versions)"), "\(apply.output)")
            try await sandbox.expectAllNodes(at: Self.latest, "after the upgrade")
            let history = try await sandbox.history()
            #expect(history.count == 1 && history.first?.outcome == .completed, "history: \(history.map { "\($0.id) \($0.status)" })")
            #expect(history.first?.target.description == Self.latest)
            // Servers before agents, one server at a time: every server step started after the
            // previous server step finished, and no agent step before the last server's.
            let steps = history.first?.steps ?? []
            // Servers hop minor by minor (3 × 2 steps); agents jump within the skew policy (3 steps).
            #expect(steps.count == 9 && steps.allSatisfy { $0.progress.stage == .done }, "\(steps.map { "\($0.node) \($0.progress.phase)" })")
            let servers = steps.filter { $0.progress.role == .server }.sorted { ($0.startedAt ?? .distantPast) < ($1.startedAt ?? .distantPast) }
            for (earlier, later) in zip(servers, servers.dropFirst()) {
                #expect((earlier.finishedAt ?? .distantFuture) <= (later.startedAt ?? .distantPast),
                        "\(earlier.node) and \(later.node) overlapped")
            }
            let lastServer = servers.compactMap(\.finishedAt).max() ?? .distantFuture
            for agent in steps where agent.progress.role == .agent {
                #expect((agent.startedAt ?? .distantPast) >= lastServer, "\(agent.node) started before the servers finished")
            }
            try sandbox.expectNothingRanTwice()
            // Before each hop's first server was touched, an etcd snapshot was sealed and recorded
            // at the version the hop leaves.
            let id = history.first?.id ?? "?"
            let backups = try await sandbox.backups()
            #expect(backups.map(\.id).sorted() == ["\(id)-h1", "\(id)-h2"]
                    && backups.allSatisfy { $0.rolloutID == id && $0.format == "etcdSnapshot" && $0.kind == .hop }, "\(backups)")
            #expect(backups.first { $0.hop == 1 }?.k3sVersion?.description == Self.start, "\(backups)")
            #expect(apply.output.contains("hop 1: datastore backup \(id)-h1 taken at \(Self.start)"), "\(apply.output)")
            if let backup = backups.first { _ = try await sandbox.openBackup(backup) }
            // Applying the same target again has nothing to do.
            let again = try await sandbox.controller(["apply", "--channel", "latest", "--yes"])
            #expect(again.status == 0 && again.output.contains("nothing to do"), "\(again.output)")
        }
    }

    @Test func anAgentFailingAfterTheServerRanTheNewMinorStopsBlockedAndResumeFixesForward() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            // Off a terminal and without --yes, apply refuses before touching anything.
            let unconfirmed = try await sandbox.controller(["apply", "--to", Self.nextMinor])
            #expect(unconfirmed.status == 2 && unconfirmed.output.contains("--yes"), "\(unconfirmed.output)")
            try await sandbox.expectAllNodes(at: Self.start, "after the refused apply")
            #expect(try await sandbox.history().isEmpty, "a refused apply recorded a rollout")

            // agent-1's new k3s never becomes healthy; server-1 goes first, is upgraded, and runs
            // the new minor: going back would need the datastore restored, so the default policy
            // stops and names both ways out (without a snapshot, the restore is `recover`'s).
            try await sandbox.fault(["agent-1", "unhealthy"])
            let apply = try await sandbox.controller(["apply", "--to", Self.nextMinor, "--yes", "--skip-backup"], timeoutSeconds: 240)
            #expect(apply.status == 3, "apply should stop blocked:\n\(apply.output)")
            #expect(apply.output.contains("no datastore backups taken (--skip-backup); a hop that raises the servers' minor cannot then be rolled back"),
                    "\(apply.output)")
            #expect(try await sandbox.backups().isEmpty, "--skip-backup took none")
            #expect(apply.output.contains("Going back needs the datastore restored: server-1 ran v1.\(Self.minor(Self.nextMinor)) healthy")
                    && apply.output.contains("`upkeep recover --from-backup ID`") && apply.output.contains("run `upkeep resume`"), "\(apply.output)")
            let nodes = try await sandbox.nodes()
            #expect(nodes["server-1"]?.version == Self.nextMinor && nodes["agent-1"]?.version == Self.start
                    && nodes["agent-2"]?.version == Self.start, "nothing went back by binaries: \(nodes.values.map(\.description))")
            let history = try await sandbox.history()
            guard case .blocked? = history.first?.status else {
                Issue.record("history should say blocked: \(history.map { "\($0.id) \($0.status)" })")
                return
            }
            let steps = history.first?.steps ?? []
            #expect(steps.contains { $0.node == "agent-1" && $0.progress.stage == .reverted } && !steps.contains { $0.progress.isRollback },
                    "\(steps.map { "\($0.progress.key) \($0.node) \($0.progress.phase)" })")

            try sandbox.expectNothingRanTwice()

            // Fixing forward: the cause is gone. Resumed with a configuration whose only window (in
            // New York time) is closed now, the rollout takes that window (and says so) and blocks
            // again untouched, and `status` shows the window with its zone;
            // `resume --ignore-window` installs agent-1 again, deliberately as its second attempt,
            // and finishes.
            try await sandbox.fault(["agent-1", "clear"])
            let closedDay = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(Int(Date().timeIntervalSince1970 / 86_400) + 3) % 7]
            let windowed = "\(sandbox.directory)/upkeep-window.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nmaintenance:\n  windows: [\"\(closedDay) 00:00-00:01 America/New_York\"]\n")
                .write(toFile: windowed, atomically: true, encoding: .utf8)
            let outside = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "resume"], timeoutSeconds: 120)
            let window = "\(closedDay) 00:00-00:01 America/New_York"
            #expect(outside.status == 3 && outside.output.contains("maintenance windows from now on: \(window) (were: none)")
                    && outside.output.contains("outside the maintenance windows (\(window)); the next opens at \(closedDay) ")
                    && outside.output.contains("`upkeep resume --ignore-window` now"), "\(outside.output)")
            let status = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "status"], timeoutSeconds: 30)
            #expect(status.output.contains("maintenance windows: \(window): closed; the next opens at \(closedDay) ")
                    && (status.output.contains(" 00:00 EST (05:00 UTC)") || status.output.contains(" 00:00 EDT (04:00 UTC)")), "\(status.output)")
            #expect(try sandbox.journalOperationIDs("agent-1").filter { $0.contains(":install:") }.count == 1, "nothing was started outside the window")
            let resume = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "resume", "--ignore-window"], timeoutSeconds: 240)
            #expect(resume.status == 0 && resume.output.contains("done: every node runs its target version"), "\(resume.output)")
            try await sandbox.expectAllNodes(at: Self.nextMinor, "after fixing forward")
            let installs = try sandbox.journalOperationIDs("agent-1").filter { $0.contains(":install:") }
            #expect(installs.map { $0.split(separator: ":").last.map(String.init) ?? "" } == ["1", "2"], "\(installs)")
        }
    }

    @Test func aControllerKilledMidInstallIsResumedAndFinishesWithoutRepeatingAnything() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            // agent-1's new k3s takes a few seconds to turn healthy, so its install is in flight when the controller dies.
            try await sandbox.fault(["agent-1", "slow-start", "4"])
            let first = try sandbox.start(["apply", "--to", Self.nextMinor, "--yes"])
            _ = try await first.waitForPhase("server-1", "draining")

            // While it runs: a second apply to the same target would carry the rollout on, but the
            // lease is held (6); one to another target is refused as the rollout is unfinished (5).
            let second = try await sandbox.controller(["apply", "--to", Self.nextMinor, "--yes"])
            #expect(second.status == 6, "a second controller should be refused by the lease:\n\(second.output)")
            let other = try await sandbox.controller(["apply", "--to", "v1.31.4+k3s1", "--allow-downgrade", "--yes"])
            #expect(other.status == 5 && other.output.contains("upkeep resume"), "\(other.output)")

            _ = try await first.waitForPhase("agent-1", "installing")
            await first.killHard()
            #expect(!first.output.contains("done: every node"), "the controller finished before it was killed:\n\(first.output)")

            // The dead controller's lease is still live: a plain resume is refused, --force-takeover proceeds.
            let polite = try await sandbox.controller(["resume"])
            #expect(polite.status == 6, "resume should be refused while the dead controller's lease lasts:\n\(polite.output)")
            let resume = try await sandbox.controller(["resume", "--force-takeover"], timeoutSeconds: 240)
            #expect(resume.status == 0, "resume should finish the rollout:\n\(resume.output)")
            try await sandbox.expectAllNodes(at: Self.nextMinor, "after the resume")
            let history = try await sandbox.history()
            #expect(history.count == 1 && history.first?.outcome == .completed, "history: \(history.map { "\($0.id) \($0.status)" })")
            try sandbox.expectNothingRanTwice()
            let installs = try sandbox.journalOperationIDs("agent-1").filter { $0.contains(":install:") }
            #expect(installs.count == 1, "agent-1 should have installed once: \(installs)")
        }
    }

    @Test(.enabled(if: EndToEndSandbox.netnsAvailable, "needs root and ip(8) for network namespaces"))
    func aNodeCutOffDuringItsInstallIsRevertedByItsAgentAndTheRolloutBlocks() async throws {
        var namespaces: [String] = []
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: Self.start, netns: true) { sandbox in
            namespaces = sandbox.manifest.nodes.compactMap(\.netns)
            #expect(namespaces.count == 2, "every node in its own namespace: \(sandbox.manifest.nodes.map(\.name))")
            // The new k3s takes a few seconds to turn healthy. The cut waits for the agent's own
            // record that it is starting the new binary (not the controller's "installing" line,
            // which precedes delivery), so it lands after the install began and before the kubelet
            // could report Ready.
            try await sandbox.fault(["agent-1", "slow-start", "4"])
            let apply = try sandbox.start(["apply", "--to", Self.nextMinor, "--yes"])
            _ = try await apply.waitForPhase("agent-1", "installing")
            try await sandbox.waitForJournal("agent-1", containing: "{\"restarting\":{}}", timeoutSeconds: 120)
            try await sandbox.setLink("agent-1", up: false)
            // Cut off from the API and the controller, the agent judges the new k3s itself and puts
            // the old one back; only then does the node come back.
            do {
                try await sandbox.waitForJournal("agent-1", containing: "{\"reverting\":{}}", timeoutSeconds: 150)
            } catch {
                try? await sandbox.setLink("agent-1", up: true)
                throw error
            }
            try await sandbox.setLink("agent-1", up: true)
            // server-1 ran the new minor healthy: going back needs the hop's snapshot restored, so
            // the default policy stops blocked, naming both ways out, and no server goes back by binaries.
            let code = await apply.exitCode(timeoutSeconds: 240)
            #expect(code == 3, "apply should report the failure and stop blocked:\n\(apply.output)")
            #expect(apply.output.contains("agent-1") && apply.output.contains("`upkeep rollback --restore`")
                    && apply.output.contains("run `upkeep resume`"), "\(apply.output)")
            let nodes = try await sandbox.nodes()
            #expect(nodes["server-1"]?.version == Self.nextMinor && nodes["agent-1"]?.version == Self.start,
                    "\(nodes.values.map(\.description))")
            let history = try await sandbox.history()
            guard case .blocked? = history.first?.status else {
                Issue.record("history should say blocked: \(history.map(\.status))")
                return
            }
            try sandbox.expectNothingRanTwice()
        }
        let listed = try await ProcessRun.run("/usr/sbin/ip", ["netns", "list"], timeoutSeconds: 20).output
        let left = namespaces.filter { listed.contains($0) }
        #expect(left.isEmpty, "network namespaces left after sandbox down: \(left)")
    }
}

extension Instant {
    static let distantPast = Instant(milliseconds: .min)
    static let distantFuture = Instant(milliseconds: .max)
}
