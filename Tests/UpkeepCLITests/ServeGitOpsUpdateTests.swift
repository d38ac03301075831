import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepRollout
import UpkeepStore

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

    @Test func anUnfinishedUpdateIsTheNewestRunningRecord() throws {
        let records = [Self.record("u3", "longhorn", to: "v1.8.0", .completed), Self.record("u2", "flux", to: "v2.5.1", .running),
                       Self.record("u1", "longhorn", to: "v1.7.3", .running)]
        #expect(ControllerLoop.unfinishedUpdate(records) == UnfinishedUpdateFacts(id: "u2", component: .flux, target: try K3sVersion("v2.5.1")))
        #expect(ControllerLoop.unfinishedUpdate([Self.record("u3", "longhorn", to: "v1.8.0", .reverted)]) == nil)
    }
}
