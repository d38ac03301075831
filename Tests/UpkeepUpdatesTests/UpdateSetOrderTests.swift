import Testing
import UpkeepCore
import UpkeepUpdates

/// The order of an `upkeep apply --all` set (issue 18, item 4): pure, from the compatibility
/// table and the nodes' Kubernetes before and after the k3s stage.
@Suite struct UpdateSetOrderTests {
    static func v(_ text: String) -> K3sVersion { CompatibilityRefusalTests.v(text) }
    static func line(_ text: String) -> MinorLine { CompatibilityRefusalTests.line(text) }

    static let matrix = "https://example.test/support-matrix"
    static let now: [(name: String, kubernetes: MinorLine)] = [("server-1", line("v1.31")), ("agent-1", line("v1.31"))]
    static let after: [(name: String, kubernetes: MinorLine)] = [("server-1", line("v1.32")), ("agent-1", line("v1.32"))]
    static let k3s = SetChange(component: .k3s, from: v("v1.31.4+k3s1"), to: v("v1.32.4+k3s1"), hops: [v("v1.32.4+k3s1")])
    static let longhorn = SetChange(component: .longhorn, from: v("v1.7.2"), to: v("v1.8.0"))
    static let flux = SetChange(component: .flux, from: v("v2.4.0"), to: v("v2.5.1"))
    static let installed: [Component: K3sVersion] = [.longhorn: v("v1.7.2"), .flux: v("v2.4.0")]

    func order(k3s: SetChange? = Self.k3s, _ changes: [SetChange], installed: [Component: K3sVersion] = Self.installed,
               table: CompatibilityTable = .builtIn) -> UpdateSetOrdering {
        UpdateSetOrder.order(k3s: k3s, changes: changes, installed: installed, nodesNow: Self.now, nodesAfter: Self.after, table: table)
    }

    @Test func releasesThatSupportTheKubernetesNowAndAfterGoBeforeK3sLonghornFirst() {
        let ordering = order([Self.flux, Self.longhorn])
        #expect(ordering.refusals.isEmpty)
        #expect(ordering.stages.map(\.change.component) == [.longhorn, .flux, .k3s])
        #expect(ordering.stages[0].why.contains("supports the Kubernetes the nodes run (v1.31) and k3s's target (v1.32): before k3s"),
                "\(ordering.stages[0].why)")
        #expect(ordering.stages[2].why == "after Longhorn v1.8.0 and Flux v2.5.1", "\(ordering.stages[2].why)")
    }

    @Test func aReleaseThatNeedsTheTargetKubernetesGoesAfterK3s() {
        // Flux v2.7 needs v1.32 (the built-in entry from fluxcd/flux2's check.go); v2.4 lets k3s reach v1.32.
        let newFlux = SetChange(component: .flux, from: Self.v("v2.4.0"), to: Self.v("v2.7.0"))
        let ordering = order([Self.longhorn, newFlux])
        #expect(ordering.refusals.isEmpty)
        #expect(ordering.stages.map(\.change.component) == [.longhorn, .k3s, .flux])
        let why = ordering.stages[2].why
        #expect(why.contains("Flux v2.7.0 needs Kubernetes v1.32 or newer") && why.contains("fluxcd/flux2") && why.hasSuffix("so after k3s"), "\(why)")
    }

    @Test func noOrderIsRefusedNamingTheTableAndTheVersions() throws {
        // Longhorn v1.7 supports up to v1.31 and v1.8 needs v1.32: neither side of k3s works.
        let table = CompatibilityTable.builtIn.replacing(with: [
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.7.0"), before: Self.v("v1.8.0"), kubernetesMin: Self.line("v1.21"),
                               kubernetesMax: Self.line("v1.31"), source: Self.matrix),
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.8.0"), kubernetesMin: Self.line("v1.32"), source: Self.matrix),
        ])
        let ordering = order([Self.longhorn, Self.flux], table: table)
        let refusal = try #require(ordering.refusals.first)
        #expect(ordering.refusals.count == 1 && refusal.change == Self.longhorn)
        let text = refusal.description
        #expect(text.contains("allows no order for Longhorn v1.7.2 → v1.8.0 and k3s"), "\(text)")
        #expect(text.contains("before k3s, Longhorn v1.8.0 needs Kubernetes v1.32 or newer"), "\(text)")
        #expect(text.contains("after k3s, Longhorn v1.7.2 supports Kubernetes up to v1.31"), "\(text)")
        #expect(text.contains(Self.matrix) && text.contains("--ignore-compatibility"), "\(text)")
        // Placed before k3s, where its own refusal asks the operator at its turn.
        #expect(ordering.stages.map(\.change.component) == [.longhorn, .flux, .k3s])
    }

    @Test func aHopOnTheWayCountsBeforeK3s() throws {
        let twoMinors = SetChange(component: .k3s, from: Self.v("v1.31.4+k3s1"), to: Self.v("v1.33.1+k3s1"),
                                  hops: [Self.v("v1.32.4+k3s1"), Self.v("v1.33.1+k3s1")])
        // The target supports v1.31 and v1.33 but not v1.32, and the installed one stops at v1.31.
        let table = CompatibilityTable.builtIn.replacing(with: [
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.7.0"), before: Self.v("v1.8.0"), kubernetesMax: Self.line("v1.31"), source: Self.matrix),
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.8.0"), kubernetesMax: Self.line("v1.31"), source: Self.matrix),
        ])
        let refused = order(k3s: twoMinors, [Self.longhorn], table: table)
        #expect(refused.refusals.first?.before.finding.contains("on the way") == true, "\(refused.refusals)")
        let allowed = CompatibilityTable.builtIn.replacing(with: [
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.7.0"), before: Self.v("v1.8.0"), kubernetesMax: Self.line("v1.31"), source: Self.matrix),
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.8.0"), kubernetesMax: Self.line("v1.33"), source: Self.matrix),
        ])
        #expect(order(k3s: twoMinors, [Self.longhorn], table: allowed).stages.map(\.change.component) == [.longhorn, .k3s])
    }

    @Test func aComponentTheSetLeavesAloneMustLetK3sMove() throws {
        let table = CompatibilityTable.builtIn.replacing(with: [
            CompatibilityEntry(component: .longhorn, from: Self.v("v1.7.0"), kubernetesMax: Self.line("v1.31"), source: Self.matrix),
        ])
        let ordering = order([Self.flux], table: table)
        let refusal = try #require(ordering.refusals.first)
        #expect(refusal.change == Self.k3s && refusal.after == nil)
        #expect(refusal.description.contains("Longhorn v1.7.2 supports Kubernetes up to v1.31") && refusal.description.contains("update Longhorn first"),
                "\(refusal)")
        #expect(order([Self.flux]).stages.last?.why == "after Flux v2.5.1; Longhorn v1.7.2 stays")
    }

    @Test func withoutAK3sStageEachReleaseMustSupportTheNodesNow() throws {
        let fine = order(k3s: nil, [Self.flux, Self.longhorn])
        #expect(fine.refusals.isEmpty && fine.stages.map(\.change.component) == [.longhorn, .flux])
        #expect(fine.stages.allSatisfy { $0.why == "k3s is current" })
        let tooNew = SetChange(component: .flux, from: Self.v("v2.4.0"), to: Self.v("v2.7.0"))
        let refused = order(k3s: nil, [tooNew])
        #expect(refused.refusals.count == 1 && refused.refusals.first?.after == nil)
        #expect(refused.refusals.first?.description.contains("upgrade k3s first") == true, "\(refused.refusals)")
    }

    @Test func k3sAloneIsOrderedAndJudgedAgainstWhatRuns() {
        let ordering = order([])
        #expect(ordering.refusals.isEmpty && ordering.stages.map(\.change.component) == [.k3s])
        #expect(ordering.stages.first?.why == "the Longhorn and Flux that run let it move; Longhorn v1.7.2 stays; Flux v2.4.0 stays")
    }
}
