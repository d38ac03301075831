import Foundation
import Testing
@testable import UpkeepCLI

/// The pure parts of `upkeep update`: finding and rewriting the Longhorn pin, the version rules,
/// and judging what the cluster shows after a commit.
@Suite struct GitOpsTests {
    static let release = """
        # Longhorn, installed by Flux
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata: {name: longhorn, namespace: flux-system}
        spec: {url: https://charts.longhorn.io}
        ---
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: longhorn
          namespace: longhorn-system
        spec:
          chart:
            spec:
              chart: longhorn
              version: "1.7.2"  # pinned on purpose
              sourceRef: {kind: HelmRepository, name: longhorn, namespace: flux-system}
          values:
            image:
              version: 9.9.9
        """

    @Test func thePinIsFoundAndOnlyItsLineChanges() throws {
        let other = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec:\n  chart:\n    spec:\n      chart: podinfo\n      version: 6.7.1\n"
        let pins = LonghornManifest.pins(in: ["infra/longhorn.yaml": Self.release, "apps/podinfo.yaml": other, "README.yaml": "a: b"])
        #expect(pins == [LonghornManifest.Pin(file: "infra/longhorn.yaml", version: "1.7.2")])
        let edited = try #require(LonghornManifest.setting("1.8.2", in: Self.release))
        let before = Self.release.split(separator: "\n", omittingEmptySubsequences: false)
        let after = edited.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(before.count == after.count)
        let changed = zip(before, after).filter { $0 != $1 }
        #expect(changed.count == 1 && changed.first?.1 == #"      version: "1.8.2"  # pinned on purpose"#, "\(changed)")
        #expect(LonghornManifest.chartVersions(edited) == ["1.8.2"])
        #expect(edited.contains("version: 9.9.9"), "other values named version are left alone")
    }

    @Test func unquotedPinsAndFlowStyleHoldersAreHandledOrRefused() {
        let plain = "kind: HelmRelease\nspec:\n  chart:\n    spec:\n      version: 1.7.2\n      chart: longhorn\n"
        #expect(LonghornManifest.setting("1.8.0", in: plain) == plain.replacingOccurrences(of: "version: 1.7.2", with: "version: 1.8.0"))
        // A pin written in flow style cannot be rewritten line by line: refused rather than guessed.
        let flow = "kind: HelmRelease\nspec:\n  chart:\n    spec: {chart: longhorn, version: 1.7.2}\n"
        #expect(LonghornManifest.pins(in: ["f.yaml": flow]).map(\.version) == ["1.7.2"])
        #expect(LonghornManifest.setting("1.8.0", in: flow) == nil)
        // Two Longhorn releases in one file: refused.
        #expect(LonghornManifest.setting("1.8.0", in: plain + "---\n" + plain) == nil)
    }

    @Test func longhornGoesUpOneMinorAtATimeAndNeverDown() throws {
        func refusal(_ from: String, _ to: String) throws -> String? {
            LonghornVersion.refusal(from: try #require(LonghornVersion(from)), to: try #require(LonghornVersion(to)))?.description
        }
        #expect(try refusal("v1.7.2", "v1.8.2") == nil)
        #expect(try refusal("v1.7.2", "v1.7.3") == nil)
        #expect(try refusal("v1.7.2", "v1.9.0")?.contains("go to a v1.8.x release first") == true)
        #expect(try refusal("v1.8.2", "v1.7.2")?.contains("cannot be downgraded") == true)
        #expect(try refusal("v1.8.2", "v2.0.0") != nil)
        #expect(LonghornVersion("1.8") == nil && LonghornVersion("v1.8.2")?.chart == "1.8.2")
    }

    @Test func theVerdictFollowsFluxThenHelmThenLonghorn() {
        let sha = "579189b2d85e0000000000000000000000000000"
        var view = ReconcileView(sourceRevision: "main@sha1:18b8fae0d05f5567f4e99662a818d879b2be4ecb",
                                 release: FluxApplyStatus(ready: true, attempted: "1.7.2", applied: "1.7.2"), longhornVersion: "v1.7.2",
                                 unhealthyVolumes: [])
        func verdict() -> ReconcileView.Verdict { view.verdict(commit: sha, chart: "1.8.2", version: "v1.8.2") }
        guard case .waiting(let fetch) = verdict() else { Issue.record("\(verdict())"); return }
        #expect(fetch.contains("Flux has not fetched 579189b2d85e"))
        view.sourceRevision = "main@sha1:\(sha)"
        guard case .waiting(let helm) = verdict() else { Issue.record("\(verdict())"); return }
        #expect(helm.contains("has not installed chart 1.8.2"))
        view.release = FluxApplyStatus(ready: false, reason: "UpgradeFailed", message: "timed out", attempted: "1.8.2", applied: "1.7.2")
        #expect(verdict() == .failed("the HelmRelease failed to install chart 1.8.2: UpgradeFailed: timed out"))
        view.release.ready = true
        view.release.applied = "1.8.2"
        guard case .waiting(let longhorn) = verdict() else { Issue.record("\(verdict())"); return }
        #expect(longhorn.contains("Longhorn reports v1.7.2"))
        view.longhornVersion = "v1.8.2"
        view.unhealthyVolumes = ["pvc-1"]
        guard case .waiting(let volumes) = verdict() else { Issue.record("\(verdict())"); return }
        #expect(volumes.contains("pvc-1"))
        view.unhealthyVolumes = []
        #expect(verdict() == .done)
    }
}
