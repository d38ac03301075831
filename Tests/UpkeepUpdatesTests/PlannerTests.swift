import Testing
import UpkeepCore
import UpkeepKube
import UpkeepUpdates

func version(_ text: String) -> K3sVersion { try! K3sVersion(text) }

func node(_ name: String, _ role: NodeRole, _ kubelet: String, arch: String = "amd64", ready: Bool = true) -> NodeVersion {
    NodeVersion(name: name, role: role, arch: arch, version: try? Component.k3s.version(fromTag: kubelet), kubeletVersion: kubelet, ready: ready)
}

func list(_ component: Component) -> ReleaseList {
    ReleaseList(releases: try! ReleaseParser.releases(JSON.array(ReleaseFixture.releases(of: component)).serialized(), component: component, source: "fixture"))
}

let fixtureAvailable = AvailableVersions(channels: [], channelTarget: version("v1.33.5+k3s1"),
                                         releases: [.k3s: list(.k3s), .flux: list(.flux), .longhorn: list(.longhorn)])

func plan(_ installed: InstalledVersions, available: AvailableVersions = fixtureAvailable, settings: CheckSettings = CheckSettings(),
          compatibility: CompatibilityTable = .builtIn) -> CheckReport
{
    UpdatePlanner.plan(installed: installed, available: available, settings: settings, compatibility: compatibility,
                       checkedAt: "2025-10-02T00:00:00Z", releaseSource: "fixture")
}

func codes(_ warnings: [CheckWarning]) -> [String] { warnings.map(\.code) }

@Suite("Planning paths and warnings")
struct PlannerTests {
    static let midRollout = InstalledK3s(nodes: [
        node("server-1", .server, "v1.30.6+k3s1"), node("server-2", .server, "v1.30.6+k3s1"), node("server-3", .server, "v1.30.6+k3s1"),
        node("agent-1", .agent, "v1.30.6+k3s1"), node("agent-2", .agent, "v1.30.8+k3s1", arch: "arm"),
    ])

    @Test("k3s goes one minor at a time through each minor's newest release, pre-releases and drafts left out")
    func k3sHops() throws {
        let report = plan(InstalledVersions(k3s: Self.midRollout))
        let k3s = try #require(report.component(.k3s))
        #expect(k3s.target == version("v1.33.5+k3s1"))
        #expect(k3s.path.map(\.version) == [version("v1.31.4+k3s1"), version("v1.32.3+k3s1"), version("v1.33.5+k3s1")])
        #expect(k3s.path[0].nodes == ["server-1", "server-2", "server-3", "agent-1", "agent-2"])
        #expect(k3s.updateAvailable && report.updatesAvailable)
        #expect(k3s.latest == version("v1.34.1+k3s1"))
        #expect(k3s.installed.version == version("v1.30.6+k3s1") && !k3s.installed.exact)
        #expect(k3s.installed.detail == "mixed: v1.30.6+k3s1 on 4, v1.30.8+k3s1 on 1")
        #expect(codes(k3s.warnings).contains("mixed-versions"))
    }

    @Test("a release missing one arch's binary is flagged for exactly that arch's nodes")
    func archMissing() throws {
        let report = plan(InstalledVersions(k3s: Self.midRollout))
        let k3s = try #require(report.component(.k3s))
        let arm = try #require(k3s.architectures?.first { $0.arch == "arm" })
        #expect(arm.nodes == ["agent-2"])
        #expect(arm.releases.map(\.binaryPublished) == [true, false, true])
        #expect(arm.releases.map(\.checksumPublished) == [true, true, true])
        #expect(arm.releases[1].binary == "k3s-armhf" && arm.releases[1].checksum == "sha256sum-arm.txt")
        let amd64 = try #require(k3s.architectures?.first { $0.arch == "amd64" })
        #expect(amd64.isComplete)
        let warning = try #require(k3s.warnings.first { $0.code == "arch-asset-missing" })
        #expect(warning.message == "k3s v1.32.3+k3s1 does not publish k3s-armhf: agent-2 (arm) cannot be upgraded to it")
    }

    @Test("no s390x binaries since v1.28.4+k3s2; an unknown arch is named")
    func s390xAndUnknownArch() throws {
        let installed = InstalledK3s(nodes: [node("server-1", .server, "v1.32.1+k3s1"), node("z-1", .agent, "v1.32.1+k3s1", arch: "s390x"),
                                             node("odd", .agent, "v1.32.1+k3s1", arch: "riscv64")])
        let k3s = try #require(plan(InstalledVersions(k3s: installed)).component(.k3s))
        let s390x = try #require(k3s.architectures?.first { $0.arch == "s390x" })
        #expect(s390x.releases.map(\.binaryPublished) == [false])
        #expect(s390x.releases.map(\.checksumPublished) == [false])
        #expect(k3s.warnings.contains { $0.code == "arch-asset-missing" && $0.message.contains("k3s-s390x or sha256sum-s390x.txt") })
        #expect(k3s.warnings.contains { $0.code == "unknown-arch" && $0.message.contains("riscv64") })
    }

    @Test("up to date on the channel's version, and never down for nodes ahead of it")
    func upToDateAndAhead() throws {
        let current = InstalledK3s(nodes: [node("s", .server, "v1.33.5+k3s1")])
        let k3s = try #require(plan(InstalledVersions(k3s: current)).component(.k3s))
        #expect(!k3s.updateAvailable && k3s.path.isEmpty)
        let ahead = InstalledK3s(nodes: [node("s", .server, "v1.33.5+k3s1"), node("a", .agent, "v1.34.1+k3s1")])
        let report = plan(InstalledVersions(k3s: ahead))
        #expect(report.component(.k3s)?.warnings.contains { $0.code == "newer-than-target" && $0.message.hasPrefix("a already runs") } == true)
        #expect(!report.updatesAvailable)
        let skew = codes(report.component(.k3s)?.warnings ?? [])
        #expect(skew.contains("version-skew"))
    }

    @Test("a patch within the same minor is one hop; a minor with no release is reported")
    func sameMinorAndMissingMinor() throws {
        let installed = InstalledVersions(k3s: InstalledK3s(nodes: [node("s", .server, "v1.33.4+k3s1")]))
        #expect(plan(installed).component(.k3s)?.path.map(\.version) == [version("v1.33.5+k3s1")])
        var available = fixtureAvailable
        available.releases[.k3s]?.releases.removeAll { $0.version.minor == 32 }
        let old = InstalledVersions(k3s: InstalledK3s(nodes: [node("s", .server, "v1.31.4+k3s1")]))
        let k3s = try #require(plan(old, available: available).component(.k3s))
        #expect(k3s.path.map(\.version) == [version("v1.33.5+k3s1")])
        #expect(k3s.warnings.contains { $0.code == "missing-minor-release" && $0.message.contains("v1.32") })
    }

    @Test("pre-releases join only when asked for")
    func preReleases() throws {
        let installed = InstalledVersions(k3s: InstalledK3s(nodes: [node("s", .server, "v1.33.5+k3s1")]),
                                          flux: InstalledComponent(state: .installed, version: version("v2.8.0"), source: "label"),
                                          longhorn: InstalledComponent(state: .installed, version: version("v1.9.1"), source: "setting"))
        let stable = plan(installed)
        #expect(!stable.updatesAvailable)
        let asked = plan(installed, settings: CheckSettings(filter: ReleaseFilter(includePreReleases: true)))
        #expect(asked.component(.flux)?.target == version("v2.9.0-rc.1"))
        #expect(asked.component(.longhorn)?.path.map(\.version) == [version("v1.10.0-rc1")])
        let drafts = plan(installed, settings: CheckSettings(filter: ReleaseFilter(includeDrafts: true)))
        #expect(drafts.component(.k3s)?.latest == version("v1.34.2+k3s1"))
    }

    @Test("Longhorn goes one minor at a time and never down")
    func longhornPath() throws {
        let k3s = InstalledK3s(nodes: [node("s", .server, "v1.33.5+k3s1")])
        let old = plan(InstalledVersions(k3s: k3s, longhorn: InstalledComponent(state: .installed, version: version("v1.7.2"), source: "setting")))
        #expect(old.component(.longhorn)?.path.map(\.version) == [version("v1.8.2"), version("v1.9.1")])
        #expect(old.component(.longhorn)?.path.map(\.kubernetesMin) == [try MinorLine("v1.25"), try MinorLine("v1.25")])
        let ahead = plan(InstalledVersions(k3s: k3s, longhorn: InstalledComponent(state: .installed, version: version("v1.10.0"), source: "setting")))
        let longhorn = try #require(ahead.component(.longhorn))
        #expect(!longhorn.updateAvailable && longhorn.path.isEmpty)
        #expect(codes(longhorn.warnings) == ["longhorn-newer-than-releases"])
    }

    @Test("Flux goes straight to the newest v2.x; bootstrapped and inferred versions are explained")
    func fluxPath() throws {
        let k3s = InstalledK3s(nodes: [node("s", .server, "v1.33.5+k3s1")])
        let bootstrapped = InstalledComponent(state: .installed, version: version("v2.3.0"), source: "label", bootstrapped: true)
        let flux = try #require(plan(InstalledVersions(k3s: k3s, flux: bootstrapped)).component(.flux))
        #expect(flux.path.map(\.version) == [version("v2.8.0")])
        #expect(codes(flux.warnings) == ["flux-bootstrapped"])
        let inferred = InstalledComponent(state: .installed, version: version("v2.8.0"), exact: false, source: "images")
        let same = try #require(plan(InstalledVersions(k3s: k3s, flux: inferred)).component(.flux))
        #expect(!same.updateAvailable)
        #expect(codes(same.warnings) == ["flux-inferred-version"])
        let notInstalled = plan(InstalledVersions(k3s: k3s, flux: InstalledComponent(state: .notInstalled, source: "no CRD")))
        #expect(notInstalled.component(.flux)?.updateAvailable == false)
        #expect(notInstalled.component(.flux)?.warnings.isEmpty == true)
    }

    @Test("cross-component warnings: a target needing newer Kubernetes, a k3s hop above Longhorn's stated maximum")
    func crossComponent() throws {
        let k3s = InstalledK3s(nodes: [node("s", .server, "v1.30.6+k3s1")])
        let installed = InstalledVersions(k3s: k3s, flux: InstalledComponent(state: .installed, version: version("v2.3.0"), source: "label"),
                                          longhorn: InstalledComponent(state: .installed, version: version("v1.7.2"), source: "setting"))
        let report = plan(installed)
        let tooOld = try #require(report.warnings.first { $0.code == "kubernetes-too-old" })
        #expect(tooOld.component == .flux)
        #expect(tooOld.message == "Flux v2.8.0 needs Kubernetes v1.33 or newer; the oldest node runs v1.30: upgrade k3s to v1.33 first, or stop at Flux v2.4.0, the newest that supports v1.30")
        #expect(!report.warnings.contains { $0.code == "kubernetes-too-new" })

        let file = #"{"entries":[{"component":"longhorn","from":"v1.7.0","before":"v1.8.0","kubernetesMin":"v1.21","kubernetesMax":"v1.31","source":"test"}]}"#
        let table = CompatibilityTable.builtIn.replacing(with: try CompatibilityTable.entries(fromJSON: Array(file.utf8), source: "t"))
        let limited = plan(installed, compatibility: table)
        let tooNew = try #require(limited.warnings.first { $0.code == "kubernetes-too-new" })
        #expect(tooNew.message == "k3s v1.32.3+k3s1 (Kubernetes v1.32) is newer than Longhorn v1.7.2 supports (up to v1.31): upgrade Longhorn first")

        let stale = InstalledVersions(k3s: InstalledK3s(nodes: [node("s", .server, "v1.28.3+k3s1")]),
                                      flux: InstalledComponent(state: .installed, version: version("v2.7.2"), source: "label"))
        #expect(plan(stale).warnings.contains { $0.code == "installed-incompatible" && $0.message.contains("needs Kubernetes v1.32") })
    }

    @Test("the table rendering lists components, nodes, arch gaps and warnings")
    func table() {
        let installed = InstalledVersions(k3s: Self.midRollout,
                                          flux: InstalledComponent(state: .installed, version: version("v2.8.0"), source: "label", bootstrapped: true),
                                          longhorn: InstalledComponent(state: .notInstalled, source: "none"))
        let text = ReportTable.render(plan(installed))
        #expect(text.contains("k3s        mixed: v1.30.6+k3s1, v1.30.8+k3s1  v1.33.5+k3s1  yes     v1.31.4+k3s1 -> v1.32.3+k3s1 -> v1.33.5+k3s1"))
        #expect(text.contains("flux       v2.8.0 (bootstrapped)"))
        #expect(text.contains("longhorn   not installed"))
        #expect(text.contains("  arm (1 node): v1.32.3+k3s1 (no k3s-armhf, sha256sum-arm.txt ok)"))
        #expect(text.contains("  agent-2   agent   arm    v1.30.8+k3s1  yes"))
        #expect(text.hasSuffix("Updates are available.\n"))
    }
}
