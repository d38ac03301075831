import UpkeepCore
import UpkeepHTTP

/// What a check asks for.
public struct CheckSettings: Sendable, Equatable {
    public var components: Set<Component>
    /// The k3s channel whose version is the target (`stable`, `latest`, `v1.33`, …).
    public var channel: String
    public var filter: ReleaseFilter

    public init(components: Set<Component> = Set(Component.allCases), channel: String = "stable", filter: ReleaseFilter = ReleaseFilter()) {
        self.components = components
        self.channel = channel
        self.filter = filter
    }
}

/// What the release source said, gathered before planning.
public struct AvailableVersions: Sendable, Equatable {
    public var channels: [K3sChannel]
    /// The version the chosen channel points at.
    public var channelTarget: K3sVersion?
    public var releases: [Component: ReleaseList]

    public init(channels: [K3sChannel] = [], channelTarget: K3sVersion? = nil, releases: [Component: ReleaseList] = [:]) {
        self.channels = channels
        self.channelTarget = channelTarget
        self.releases = releases
    }
}

/// Turns installed and available versions into a report: targets, paths, arch support and
/// warnings. Pure: no clock, no network; everything it needs is an argument.
///
/// Rules (docs/check.md): k3s moves one minor at a time, each intermediate minor at its newest
/// release, never down; Longhorn the same, never down; Flux straight to the newest v2.x.
public enum UpdatePlanner {
    public static func plan(installed: InstalledVersions, available: AvailableVersions, settings: CheckSettings,
                            compatibility: CompatibilityTable, checkedAt: String, releaseSource: String,
                            rateLimit: RateLimitStatus? = nil) -> CheckReport
    {
        var components: [ComponentReport] = []
        var cross: [CheckWarning] = []
        let k3sReport = settings.components.contains(.k3s) ? k3s(installed.k3s, available: available, settings: settings) : nil
        if let k3sReport { components.append(k3sReport) }
        // The Kubernetes minor the cluster runs now: its oldest node.
        let current = installed.k3s.oldest?.minorLine
        let k3sTarget = k3sReport?.target.map { max($0.minorLine, current ?? $0.minorLine) } ?? current
        if settings.components.contains(.flux), let flux = installed.flux {
            let report = self.flux(flux, releases: available.releases[.flux], filter: settings.filter)
            cross += compatibilityWarnings(.flux, report, compatibility: compatibility, current: current, k3sTarget: k3sTarget,
                                           candidates: admitted(available.releases[.flux], settings.filter).filter { $0.version.major == 2 })
            components.append(annotate(report, compatibility))
        }
        if settings.components.contains(.longhorn), let longhorn = installed.longhorn {
            let report = self.longhorn(longhorn, releases: available.releases[.longhorn], filter: settings.filter)
            cross += compatibilityWarnings(.longhorn, report, compatibility: compatibility, current: current, k3sTarget: k3sTarget,
                                           candidates: admitted(available.releases[.longhorn], settings.filter))
            if let installedVersion = longhorn.version, let maximum = compatibility.entry(for: .longhorn, installedVersion)?.kubernetesMax {
                for hop in k3sReport?.path ?? [] where hop.version.minorLine > maximum {
                    cross.append(CheckWarning("kubernetes-too-new", .k3s,
                                              "k3s \(hop.version) (Kubernetes \(hop.version.minorLine)) is newer than Longhorn \(installedVersion) supports (up to \(maximum)): upgrade Longhorn first"))
                    break
                }
            }
            components.append(annotate(report, compatibility))
        }
        return CheckReport(checkedAt: checkedAt, releaseSource: releaseSource, components: components.sorted { $0.component < $1.component },
                           warnings: cross, rateLimit: rateLimit)
    }

    static func admitted(_ list: ReleaseList?, _ filter: ReleaseFilter) -> [Release] {
        (list?.releases ?? []).filter(filter.admits).sorted { $0.version < $1.version }
    }

    /// Newest release of each minor between `from` and `to` (exclusive), then `to`; minors
    /// without a release are returned as missing.
    static func hops(from: K3sVersion, to target: K3sVersion, candidates: [Release]) -> (hops: [K3sVersion], missing: [MinorLine]) {
        guard from < target else { return ([], []) }
        guard let span = from.minorLine.minorsUntil(target.minorLine), span > 1 else { return ([target], []) }
        var hops: [K3sVersion] = []
        var missing: [MinorLine] = []
        var line = from.minorLine.next
        while line < target.minorLine {
            if let newest = candidates.last(where: { $0.version.minorLine == line }) {
                hops.append(newest.version)
            } else {
                missing.append(line)
            }
            line = line.next
        }
        return (hops + [target], missing)
    }

    // MARK: - k3s

    static func k3s(_ installed: InstalledK3s, available: AvailableVersions, settings: CheckSettings) -> ComponentReport {
        var warnings: [CheckWarning] = []
        let list = available.releases[.k3s]
        let candidates = admitted(list, settings.filter)
        let oldest = installed.oldest
        var summary = InstalledComponent(state: oldest == nil ? .unknown : .installed, version: oldest, exact: !installed.isMixed,
                                         source: "nodes' status.nodeInfo.kubeletVersion")
        if installed.isMixed {
            let counts = installed.versions.map { version in "\(version) on \(installed.nodes.filter { $0.version == version }.count)" }
            summary.detail = "mixed: " + counts.joined(separator: ", ")
            warnings.append(CheckWarning("mixed-versions", .k3s, "nodes run different versions (\(counts.joined(separator: ", "))); the path starts at the oldest"))
        }
        warnings += skewWarnings(installed)
        for node in installed.nodes where node.version == nil {
            warnings.append(CheckWarning("unreadable-node-version", .k3s,
                                         "node \(node.name) reports kubeletVersion \"\(node.kubeletVersion.prefix(60))\", which is not a k3s version; it is left out"))
        }
        if list?.truncated == true {
            warnings.append(CheckWarning("releases-truncated", .k3s, "stopped reading k3s releases after \(list?.pagesRead ?? 0) pages; intermediate releases may be missing"))
        }
        var report = ComponentReport(component: .k3s, installed: summary, nodes: installed.nodes, channels: available.channels,
                                     channel: settings.channel, latest: candidates.last?.version, target: available.channelTarget,
                                     releasesConsidered: candidates.count)
        guard let oldest, let target = available.channelTarget else {
            report.warnings = warnings
            return report
        }
        if target.major != oldest.major {
            warnings.append(CheckWarning("major-version-available", .k3s, "the \(settings.channel) channel points at \(target), another major version than \(oldest); Upkeep does not plan that"))
            report.warnings = warnings
            return report
        }
        let newer = installed.nodes.filter { ($0.version ?? target) > target }.map(\.name)
        if !newer.isEmpty {
            warnings.append(CheckWarning("newer-than-target", .k3s,
                                         "\(newer.joined(separator: ", ")) already run\(newer.count == 1 ? "s" : "") a version newer than \(target) (\(settings.channel)); Upkeep never downgrades"))
        }
        let (versions, missing) = hops(from: oldest, to: target, candidates: candidates)
        for line in missing {
            warnings.append(CheckWarning("missing-minor-release", .k3s, "no k3s release of \(line) was found; the path cannot go through it"))
        }
        if !versions.isEmpty, !(list?.releases ?? []).contains(where: { $0.version == target }) {
            warnings.append(CheckWarning("channel-target-not-released", .k3s, "\(target) from the \(settings.channel) channel is not among the releases read; its files cannot be checked"))
        }
        report.updateAvailable = !versions.isEmpty
        report.path = versions.map { hop in
            Hop(version: hop, nodes: installed.nodes.filter { ($0.version ?? hop) < hop }.map(\.name))
        }
        report.architectures = architectures(installed, path: report.path, releases: list?.releases ?? [], warnings: &warnings)
        report.warnings = warnings
        return report
    }

    static func skewWarnings(_ installed: InstalledK3s) -> [CheckWarning] {
        var warnings: [CheckWarning] = []
        let servers = installed.nodes.filter { $0.role == .server }.compactMap(\.version)
        let agents = installed.nodes.filter { $0.role == .agent }.compactMap(\.version)
        if let low = servers.min(), let high = servers.max(), (low.minorLine.minorsUntil(high.minorLine) ?? 0) > 1 {
            warnings.append(CheckWarning("version-skew", .k3s, "servers span \(low.minorLine) to \(high.minorLine); Kubernetes allows one minor between API servers"))
        }
        if let newestAgent = agents.max(), let oldestServer = servers.min(), newestAgent.minorLine > oldestServer.minorLine {
            warnings.append(CheckWarning("version-skew", .k3s, "an agent runs \(newestAgent), newer than the oldest server \(oldestServer); a kubelet must not be newer than its API server"))
        }
        return warnings
    }

    static func architectures(_ installed: InstalledK3s, path: [Hop], releases: [Release], warnings: inout [CheckWarning]) -> [ArchitectureSupport] {
        var byArch: [String: [NodeVersion]] = [:]
        for node in installed.nodes { byArch[node.arch, default: []].append(node) }
        var result: [ArchitectureSupport] = []
        for name in byArch.keys.sorted() {
            let nodes = byArch[name] ?? []
            guard let arch = try? Arch(name) else {
                warnings.append(CheckWarning("unknown-arch", .k3s, "nodes \(nodes.map(\.name).joined(separator: ", ")) report architecture \"\(name.prefix(40))\", for which k3s publishes no binary"))
                continue
            }
            var support: [AssetSupport] = []
            for hop in path {
                let release = releases.first { $0.version == hop.version }
                let entry = AssetSupport(version: hop.version, binary: arch.binaryAssetName, binaryPublished: release.map { $0.publishes(arch.binaryAssetName) },
                                         checksum: arch.checksumAssetName, checksumPublished: release.map { $0.publishes(arch.checksumAssetName) })
                support.append(entry)
                let affected = nodes.filter { hop.nodes?.contains($0.name) ?? true }.map(\.name)
                let missing = [(entry.binaryPublished, entry.binary), (entry.checksumPublished, entry.checksum)].filter { $0.0 == false }.map(\.1)
                if !missing.isEmpty, !affected.isEmpty {
                    warnings.append(CheckWarning("arch-asset-missing", .k3s,
                                                 "k3s \(hop.version) does not publish \(missing.joined(separator: " or ")): \(affected.joined(separator: ", ")) (\(name)) cannot be upgraded to it"))
                }
            }
            result.append(ArchitectureSupport(arch: name, nodes: nodes.map(\.name), releases: support))
        }
        return result
    }

    // MARK: - Flux

    static func flux(_ installed: InstalledComponent, releases list: ReleaseList?, filter: ReleaseFilter) -> ComponentReport {
        let all = admitted(list, filter)
        let candidates = all.filter { $0.version.major == 2 }
        var report = ComponentReport(component: .flux, installed: installed, latest: candidates.last?.version, releasesConsidered: all.count)
        if let newest = all.last, newest.version.major > 2 {
            report.warnings.append(CheckWarning("major-version-available", .flux, "Flux \(newest.version) is out; Upkeep plans v2.x upgrades only"))
        }
        if installed.state == .unknown {
            report.warnings.append(CheckWarning("component-unknown", .flux, "Flux is installed but its version could not be read (\(installed.detail ?? installed.source))"))
        }
        guard installed.state == .installed, let version = installed.version, let latest = candidates.last?.version else { return report }
        guard version.major == 2 else {
            report.warnings.append(CheckWarning("flux-not-v2", .flux, "Flux \(version) is not v2; migrating to Flux v2 is not an upgrade Upkeep plans"))
            return report
        }
        report.target = latest
        if installed.exact {
            report.updateAvailable = version < latest
        } else {
            report.updateAvailable = version.minorLine < latest.minorLine
            report.warnings.append(CheckWarning("flux-inferred-version", .flux,
                                                "the Flux version was inferred as \(version.minorLine).x from controller images; a patch update within \(version.minorLine) cannot be told"))
        }
        if report.updateAvailable {
            report.path = [Hop(version: latest)]
            if installed.bootstrapped == true {
                report.warnings.append(CheckWarning("flux-bootstrapped", .flux,
                                                    "Flux manages itself from Git: upgrade by regenerating gotk-components.yaml (or flux bootstrap) and committing it"))
            }
        }
        return report
    }

    // MARK: - Longhorn

    static func longhorn(_ installed: InstalledComponent, releases list: ReleaseList?, filter: ReleaseFilter) -> ComponentReport {
        let candidates = admitted(list, filter)
        var report = ComponentReport(component: .longhorn, installed: installed, latest: candidates.last?.version, releasesConsidered: candidates.count)
        if installed.state == .unknown {
            report.warnings.append(CheckWarning("component-unknown", .longhorn, "Longhorn is installed but its version could not be read (\(installed.detail ?? installed.source))"))
        }
        guard installed.state == .installed, let version = installed.version, let latest = candidates.last?.version else { return report }
        let sameMajor = candidates.filter { $0.version.major == version.major }
        if latest.major != version.major {
            report.warnings.append(CheckWarning("major-version-available", .longhorn, "Longhorn \(latest) is out; Upkeep plans upgrades within v\(version.major).x only"))
        }
        guard let target = sameMajor.last?.version else { return report }
        report.target = max(target, version)
        if version > target {
            report.warnings.append(CheckWarning("longhorn-newer-than-releases", .longhorn,
                                                "Longhorn \(version) is newer than every release considered (\(target)); Longhorn never downgrades"))
            return report
        }
        let (versions, missing) = hops(from: version, to: target, candidates: sameMajor)
        for line in missing {
            report.warnings.append(CheckWarning("missing-minor-release", .longhorn, "no Longhorn release of \(line) was found; Longhorn upgrades one minor at a time"))
        }
        report.updateAvailable = !versions.isEmpty
        report.path = versions.map { Hop(version: $0) }
        return report
    }

    // MARK: - Compatibility

    /// Fills each hop's `kubernetesMin` from the table.
    static func annotate(_ report: ComponentReport, _ table: CompatibilityTable) -> ComponentReport {
        var report = report
        report.path = report.path.map { hop in
            var hop = hop
            hop.kubernetesMin = table.entry(for: report.component, hop.version)?.kubernetesMin
            return hop
        }
        return report
    }

    static func compatibilityWarnings(_ component: Component, _ report: ComponentReport, compatibility: CompatibilityTable,
                                      current: MinorLine?, k3sTarget: MinorLine?, candidates: [Release]) -> [CheckWarning]
    {
        guard let current else { return [] }
        var warnings: [CheckWarning] = []
        let name = component == .flux ? "Flux" : "Longhorn"
        if let installed = report.installed.version, let minimum = compatibility.entry(for: component, installed)?.kubernetesMin, current < minimum {
            warnings.append(CheckWarning("installed-incompatible", component,
                                         "the installed \(name) \(installed) needs Kubernetes \(minimum) or newer, but the oldest node runs \(current)"))
        }
        for hop in report.path {
            guard let minimum = compatibility.entry(for: component, hop.version)?.kubernetesMin, current < minimum else { continue }
            var message = "\(name) \(hop.version) needs Kubernetes \(minimum) or newer; the oldest node runs \(current): upgrade k3s to \(minimum) first"
            if let k3sTarget, k3sTarget < minimum { message += " (the k3s target \(k3sTarget) is not enough either)" }
            let fitting = candidates.last { release in
                release.version <= hop.version && (compatibility.entry(for: component, release.version)?.kubernetesMin).map { $0 <= current } ?? true
            }
            if let fitting, fitting.version > (report.installed.version ?? fitting.version) {
                message += ", or stop at \(name) \(fitting.version), the newest that supports \(current)"
            }
            warnings.append(CheckWarning("kubernetes-too-old", component, message))
            break
        }
        return warnings
    }
}
