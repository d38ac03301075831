import Testing
import UpkeepCore
import UpkeepUpdates

/// The compatibility table's refusals (issue 18, item 5): pure decisions from the table, the
/// versions that run and the target.
@Suite struct CompatibilityRefusalTests {
    static func v(_ text: String) -> K3sVersion {
        guard let version = try? K3sVersion(text) else { preconditionFailure("bad version \(text)") }
        return version
    }

    static func line(_ text: String) -> MinorLine {
        guard let line = try? MinorLine(text) else { preconditionFailure("bad minor \(text)") }
        return line
    }

    static let matrix = "https://example.test/longhorn-support-matrix"
    /// The built-in table with a Longhorn maximum, as a support matrix would give it.
    static let table = CompatibilityTable.builtIn.replacing(with: [
        CompatibilityEntry(component: .longhorn, from: v("v1.7.0"), before: v("v1.8.0"), kubernetesMin: line("v1.21"), kubernetesMax: line("v1.31"),
                           source: matrix),
        CompatibilityEntry(component: .longhorn, from: v("v1.8.0"), kubernetesMin: line("v1.25"), kubernetesMax: line("v1.33"), source: matrix),
    ])

    @Test func aK3sTargetAboveTheInstalledLonghornsMaximumIsRefusedNamingTheSource() throws {
        let refusal = try #require(Self.table.refusal(k3sTarget: Self.v("v1.32.2+k3s1"), hops: [Self.v("v1.32.2+k3s1")], running: [Self.line("v1.31")],
                                                      installed: [.longhorn: Self.v("v1.7.2"), .flux: Self.v("v2.4.0")]))
        #expect(refusal.conflicts.map(\.component) == [.longhorn], "Flux v2.4 needs v1.28 or newer and has no maximum: not refused")
        #expect(refusal.target == Self.v("v1.32.2+k3s1"))
        let text = refusal.description
        #expect(text.contains("Longhorn v1.7.2 supports Kubernetes up to v1.31"), "\(text)")
        #expect(text.contains(Self.matrix), "the entry's source is named: \(text)")
        #expect(text.contains("k3s v1.32.2+k3s1 is Kubernetes v1.32"), "\(text)")
        #expect(text.contains("update Longhorn first") && text.contains("--ignore-compatibility"), "what to do: \(text)")
    }

    @Test func everyHopOfARolloutIsJudgedAndAMinorTheClusterRunsIsNot() throws {
        let installed: [Component: K3sVersion] = [.longhorn: Self.v("v1.7.2")]
        let through = try #require(Self.table.refusal(k3sTarget: Self.v("v1.33.1+k3s1"), hops: [Self.v("v1.32.2+k3s1"), Self.v("v1.33.1+k3s1")],
                                                      running: [Self.line("v1.31")], installed: installed))
        #expect(through.conflicts.first?.kubernetes == Self.line("v1.32"), "the first minor beyond the maximum is named")
        #expect(through.description.contains("on the way"), "\(through)")
        #expect(Self.table.refusal(k3sTarget: Self.v("v1.31.9+k3s1"), hops: [Self.v("v1.31.9+k3s1")], running: [Self.line("v1.31")],
                                   installed: installed) == nil, "a patch within the minor the cluster runs")
        #expect(Self.table.refusal(k3sTarget: Self.v("v1.32.2+k3s1"), hops: [Self.v("v1.32.2+k3s1")], running: [Self.line("v1.31"), Self.line("v1.32")],
                                   installed: installed) == nil, "a node runs v1.32 already: finishing the rollout adds nothing")
        #expect(Self.table.refusal(k3sTarget: Self.v("v1.33.1+k3s1"), hops: [Self.v("v1.33.1+k3s1")], running: [Self.line("v1.32")],
                                   installed: [.longhorn: Self.v("v1.8.2")]) == nil, "Longhorn v1.8 supports up to v1.33")
        #expect(CompatibilityTable.builtIn.refusal(k3sTarget: Self.v("v1.34.1+k3s1"), hops: [Self.v("v1.34.1+k3s1")], running: [Self.line("v1.33")],
                                                   installed: [.longhorn: Self.v("v1.7.2"), .flux: Self.v("v2.4.0")]) == nil,
                "the built-in table states no maximum: nothing is refused on its word")
    }

    @Test func aFluxTargetMustSupportEveryNodesKubernetes() throws {
        let nodes: [(name: String, kubernetes: MinorLine)] = [("server-1", Self.line("v1.33")), ("agent-1", Self.line("v1.32")), ("agent-2", Self.line("v1.32"))]
        let refusal = try #require(CompatibilityTable.builtIn.refusal(.flux, target: Self.v("v2.8.0"), nodes: nodes),
                                   "mid-rollout, two nodes still run v1.32")
        #expect(refusal.conflicts.count == 1)
        #expect(refusal.conflicts.first?.nodes == ["agent-1", "agent-2"])
        let text = refusal.description
        #expect(text.contains("Flux v2.8.0 needs Kubernetes v1.33 or newer"), "\(text)")
        #expect(text.contains("https://github.com/fluxcd/flux2/blob/v2.8.0/cmd/flux/check.go"), "the upstream source: \(text)")
        #expect(text.contains("agent-1, agent-2 run Kubernetes v1.32"), "\(text)")
        #expect(text.contains("upgrade k3s first"), "\(text)")
        #expect(CompatibilityTable.builtIn.refusal(.flux, target: Self.v("v2.7.0"), nodes: nodes) == nil, "Flux v2.7 needs v1.32")
    }

    @Test func aLonghornTargetAboveItsMaximumForANodeIsRefused() throws {
        let refusal = try #require(Self.table.refusal(.longhorn, target: Self.v("v1.7.3"), nodes: [("server-1", Self.line("v1.32"))]))
        #expect(refusal.conflicts.first?.limit == .maximum(Self.line("v1.31")))
        #expect(refusal.description.contains("supports Kubernetes up to v1.31"), "\(refusal)")
        #expect(refusal.description.contains("bring every node to a Kubernetes it supports"), "\(refusal)")
        #expect(Self.table.refusal(.longhorn, target: Self.v("v1.8.2"), nodes: [("server-1", Self.line("v1.32"))]) == nil)
    }

    @Test func aVersionNoEntryCoversIsNotRefused() {
        #expect(CompatibilityTable.builtIn.conflict(.longhorn, Self.v("v1.3.0"), kubernetes: Self.line("v1.10")) == nil)
        #expect(CompatibilityTable.builtIn.conflict(.flux, Self.v("v2.0.0"), kubernetes: Self.line("v1.23"))?.limit == .minimum(Self.line("v1.24")))
    }

    @Test func everyBuiltInSourceIsAnUpstreamURL() {
        for entry in CompatibilityTable.builtIn.entries {
            #expect(entry.source.hasPrefix("https://github.com/fluxcd/flux2/blob/v") || entry.source.hasPrefix("https://github.com/longhorn/longhorn/blob/"),
                    "\(entry.component) \(entry.from): \(entry.source)")
        }
    }
}
