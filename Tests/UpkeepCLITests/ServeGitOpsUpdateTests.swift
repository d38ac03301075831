import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepRollout
import UpkeepStore
import UpkeepUpdates

/// Serve's Longhorn and Flux updates as the shell sees them: which versions it holds against
/// (`failed-before`: those whose update reached the repository and failed; not those that never
/// did, docs/serve.md rule 4), and how `status --server` names the updates it may start.
@Suite struct ServeGitOpsUpdateTests {
    static func record(_ id: String, _ component: String, to: String, _ outcome: ComponentUpdateRecord.Outcome, _ message: String = "")
        -> ComponentUpdateRecord {
        ComponentUpdateRecord(id: id, component: component, from: "v1.7.2", to: to, repository: "file:///fleet.git", file: "longhorn.yaml",
                              startedAt: Instant.seconds(1_795_834_800), outcome: outcome, message: message)
    }

    @Test func aRevertedOrUnrevertedUpdateHoldsItsVersionAndAnUnpushedOneDoesNot() throws {
        let records = [
            Self.record("u4", "longhorn", to: "v1.8.0", .failed, GitOpsUpdate.pushFailedPrefix + "git push failed: connection refused"),
            Self.record("u3", "flux", to: "v2.5.1", .failed, GitOpsUpdate.notPushedPrefix + "this controller lost its lock"),
            Self.record("u2", "longhorn", to: "v1.8.0", .reverted, "UpgradeFailed"),
            Self.record("u1", "flux", to: "v2.4.1", .failed, "ReconciliationFailed; the revert could not be pushed"),
            Self.record("u0", "longhorn", to: "v1.7.3", .completed),
            Self.record("u9", "longhorn", to: "v1.9.1", .running),
        ]
        let failed = ControllerLoop.failedUpdates(records)
        #expect(failed == [GitOpsTarget(component: .longhorn, version: try K3sVersion("v1.8.0")): "u2",
                           GitOpsTarget(component: .flux, version: try K3sVersion("v2.4.1")): "u1"])
    }

    @Test func statusFromAServerNamesTheGitUpdatesServeMayStart() throws {
        let board = ServeBoard(policy: AutomationPolicy(k3s: .minor, longhorn: AutomationPolicy.GitOps(scope: .minor, pinned: try K3sVersion("v1.9.1"))))
        board.decided(.update(.longhorn, target: try K3sVersion("v1.8.0")), facts: AutomationFacts(), at: Instant.seconds(1_795_834_800))
        #expect(RemoteStatusOptions.line(board.current)
                == "serve: automation.k3s: minor (channel stable), automation.longhorn: minor (longhornVersion v1.9.1); update: longhorn update to v1.8.0\n")
        #expect(board.exposition().contains(#"upkeep_serve_updates_total{component="longhorn"} 1"#))
    }

    static func part(_ component: Component, _ version: String, target: String? = nil) -> ComponentReport {
        ComponentReport(component: component, installed: InstalledComponent(state: .installed, version: try? K3sVersion(version), source: "test"),
                        target: target.flatMap { try? K3sVersion($0) })
    }

    /// A check (CheckRun) that fails whenever it includes one of `failing`, as one whose releases
    /// cannot be read fails as a whole.
    static func check(failing: Set<Component>) -> ([Component]) async -> (code: Int32, report: CheckReport?, failure: String?) {
        { components in
            if let bad = components.first(where: failing.contains) { return (8, nil, "\(bad.rawValue) releases: invalid JSON") }
            let parts = components.map { component -> ComponentReport in
                switch component {
                case .k3s: part(.k3s, "v1.31.4+k3s1", target: "v1.32.2+k3s1")
                case .longhorn: part(.longhorn, "v1.7.2")
                case .flux: part(.flux, "v2.4.0")
                }
            }
            return (10, CheckReport(checkedAt: "2026-12-07T08:00:00Z", releaseSource: "test", components: parts, warnings: []), nil)
        }
    }

    static func releases(failing: Set<Component>) -> (Component, K3sVersion) async throws -> [K3sVersion] {
        { component, _ in
            if failing.contains(component) { throw ServeCheckError("cannot read \(component.rawValue) releases") }
            return try [.k3s: ["v1.32.2+k3s1"], .longhorn: ["v1.8.0"], .flux: ["v2.5.1"]][component, default: []].map { try K3sVersion($0) }
        }
    }

    @Test func longhornsReleasesUnreadHoldNeitherK3sNorFlux() async throws {
        let policy = AutomationPolicy(k3s: .minor, longhorn: AutomationPolicy.GitOps(scope: .minor), flux: AutomationPolicy.GitOps(scope: .minor))
        for failing in [Component.longhorn] {
            // In the check and in the releases serve reads again: each alone.
            for (check, releases) in [(Set([failing]), Set<Component>()), ([], [failing])] {
                let gathered = try await ControllerLoop.gather(policy: policy, check: Self.check(failing: check), nodes: { nil },
                                                               releases: Self.releases(failing: releases), compatibility: { .builtIn })
                #expect(gathered.seen.goal == (try K3sVersion("v1.32.2+k3s1")) && gathered.seen.k3sUnread == nil && gathered.k3sFailure == nil)
                #expect(gathered.seen.gitOps.keys.sorted { $0.rawValue < $1.rawValue } == [.flux], "Flux goes on, Longhorn waits")
                #expect(gathered.unread.count == 1 && gathered.unread[0].contains("longhorn"), "\(gathered.unread)")
                let decision = AutomationDecider.decide(AutomationFacts(checks: CheckHistoryFacts(lastSuccessAt: Instant.seconds(1_795_834_800)),
                                                                        seen: gathered.seen), policy: policy, now: Instant.seconds(1_795_834_860))
                #expect(decision == .start(target: try K3sVersion("v1.32.2+k3s1")), "k3s is not held by Longhorn's releases")
            }
        }
    }

    @Test func k3sReleasesUnreadHoldK3sAloneAndTheCheckCountsAsFailed() async throws {
        let policy = AutomationPolicy(k3s: .minor, longhorn: AutomationPolicy.GitOps(scope: .minor))
        for (check, releases) in [(Set([Component.k3s]), Set<Component>()), ([], [.k3s])] {
            let gathered = try await ControllerLoop.gather(policy: policy, check: Self.check(failing: check), nodes: { try K3sVersion("v1.31.4+k3s1") },
                                                           releases: Self.releases(failing: releases), compatibility: { .builtIn })
            #expect(gathered.k3sFailure?.contains("k3s") == true && gathered.seen.k3sUnread == gathered.k3sFailure, "\(String(describing: gathered.k3sFailure))")
            #expect(gathered.seen.installed == (try K3sVersion("v1.31.4+k3s1")))
            let facts = AutomationFacts(checks: CheckHistoryFacts(failures: 1, lastFailureAt: Instant.seconds(1_795_834_800)), seen: gathered.seen)
            #expect(AutomationDecider.decide(facts, policy: policy, now: Instant.seconds(1_795_834_810)) == .update(.longhorn, target: try K3sVersion("v1.8.0")),
                    "Longhorn goes on while k3s's releases cannot be read")
        }
    }

    @Test func anUnfinishedUpdateIsTheNewestRunningRecord() throws {
        let records = [Self.record("u3", "longhorn", to: "v1.8.0", .completed), Self.record("u2", "flux", to: "v2.5.1", .running),
                       Self.record("u1", "longhorn", to: "v1.7.3", .running)]
        #expect(ControllerLoop.unfinishedUpdate(records) == UnfinishedUpdateFacts(id: "u2", component: .flux, target: try K3sVersion("v2.5.1")))
        #expect(ControllerLoop.unfinishedUpdate([Self.record("u3", "longhorn", to: "v1.8.0", .reverted)]) == nil)
    }
}
