import Foundation
import UpkeepKube
import UpkeepStore
import Yams

/// `upkeep update --component longhorn`: the chart version of the HelmRelease that pins Longhorn.
enum LonghornUpdate {
    /// Refuses a step Longhorn does not take, or a cluster whose volumes are not healthy; nil
    /// when it runs `target` already. The plan snapshots every attached volume before its commit
    /// and, after a failure, reverts only while Longhorn's manager has not moved.
    static func plan(kube: KubeClient, target: LonghornVersion, source: GitOpsSource,
                     snapshots: ControllerConfig.Longhorn = ControllerConfig.Longhorn(), timeoutSeconds: Int = 900) async throws -> GitOpsPlan? {
        let installedText: String
        do {
            installedText = try await kube.get(LonghornSetting.self, "current-longhorn-version", namespace: "longhorn-system").value
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read Longhorn's version (setting current-longhorn-version): \(error)")
        }
        guard let installed = LonghornVersion(installedText) else {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "Longhorn reports version \"\(installedText)\", which is not vX.Y.Z")
        }
        if installed == target {
            print("nothing to do: Longhorn already runs \(target)")
            return nil
        }
        if let refusal = LonghornVersion.refusal(from: installed, to: target) { throw refusal.failure }
        _ = try await LonghornSnapshots.healthyVolumes(kube)
        let taker = LonghornSnapshots(kube: kube, policy: snapshots)
        return GitOpsPlan(component: "longhorn", from: installed.description, to: target.description, edit: { files in
            try edit(files, installed: installed, target: target)
        }, verdict: { sha, _ in try await verdict(kube: kube, source: source, target: target)(sha) },
        prepare: { id, say in try await taker.take(update: id, say: say) },
        forwardOnly: forwardOnly(kube: kube, from: installed), afterApplied: engineUpgrades(kube: kube, timeoutSeconds: timeoutSeconds))
    }

    /// After the manager runs the new version: every attached volume's engine upgraded and
    /// validated healthy (`LonghornEngineUpgrade`), within `timeoutSeconds`.
    static func engineUpgrades(kube: KubeClient, timeoutSeconds: Int) -> @Sendable ((String) -> Void) async -> ReconcileVerdict {
        { say in await LonghornEngineUpgrade(kube: kube, timeoutSeconds: timeoutSeconds).run(say: say) }
    }

    /// nil while Longhorn's manager still runs `from` (a revert is safe); else why the commit
    /// stays, what Longhorn shows and how to go on: its upgrade guide supports no downgrade and
    /// Longhorn blocks one (https://longhorn.io/docs/1.12.2/deploy/upgrade/).
    static func forwardOnly(kube: KubeClient, from: LonghornVersion) -> @Sendable (ComponentUpdateRecord) async -> String? {
        { record in
            let setting = try? await kube.get(LonghornSetting.self, "current-longhorn-version", namespace: LonghornSnapshots.namespace)
            let manager = try? await kube.get(.daemonSets, "longhorn-manager", namespace: LonghornSnapshots.namespace)
            let tags = (manager?[path: "spec", "template", "spec", "containers"]?.array ?? []).compactMap { container -> String? in
                guard let image = container["image"]?.string, let colon = image.lastIndex(of: ":") else { return nil }
                return String(image[image.index(after: colon)...])
            }
            let state = LonghornManagerState(reportedVersion: setting?.value, managerImageTags: tags)
            guard let moved = state.moved(from: from) else { return nil }
            let volumes = (try? await kube.list(LonghornVolume.self, namespace: LonghornSnapshots.namespace)) ?? []
            let shown = volumes.sorted { $0.name < $1.name }.prefix(10).map {
                "\($0.name) \($0.state) \($0.robustness)" + ($0.currentImage.isEmpty ? "" : " engine \($0.currentImage)")
            }
            let snapshots = record.snapshots.isEmpty ? "no snapshots were taken"
                : "the snapshots taken before it: \(record.snapshots.joined(separator: ", ")) "
                    + "(`kubectl -n longhorn-system get snapshots.longhorn.io -l \(LonghornSnapshots.updateLabel)=\(record.id)`)"
            return "\(moved), and Longhorn does not support downgrades (it blocks them: https://longhorn.io/docs/1.12.2/deploy/upgrade/), "
                + "so the chart stays at \(record.to). Longhorn shows: manager \(setting?.value ?? "unknown"); volumes: "
                + (shown.isEmpty ? "none read" : shown.joined(separator: ", ") + (volumes.count > 10 ? ", …" : ""))
                + ". To go on: see why the HelmRelease failed (`kubectl -n longhorn-system describe helmreleases.helm.toolkit.fluxcd.io`), "
                + "fix it and let Flux retry (`flux reconcile helmrelease`), or go on to a later \(record.to) patch with `upkeep update`; "
                + snapshots
        }
    }

    /// Where an update of Longhorn to `target` stands with a commit (a first run, or one carried on).
    static func verdict(kube: KubeClient, source: GitOpsSource, target: LonghornVersion) -> @Sendable (String) async throws -> ReconcileVerdict {
        { sha in try await observe(kube, source: source).verdict(commit: sha, chart: target.chart, version: target.description) }
    }

    static func edit(_ files: [String: String], installed: LonghornVersion, target: LonghornVersion) throws -> GitOpsChange {
        let pins = LonghornManifest.pins(in: files)
        guard pins.count == 1, let pin = pins.first else {
            throw CommandFailure(code: RolloutExitCode.refused, message: pins.isEmpty
                ? "no HelmRelease of the longhorn chart in the repository; Upkeep changes Longhorn only where a HelmRelease pins it"
                : "several Longhorn HelmReleases (\(pins.map { "\($0.file): \($0.version)" }.joined(separator: ", "))); refusing to guess")
        }
        guard let edited = LonghornManifest.setting(target.chart, in: files[pin.file] ?? "") else {
            throw CommandFailure(code: RolloutExitCode.refused, message: "cannot rewrite the chart version in \(pin.file) safely; change it by hand")
        }
        return GitOpsChange(file: pin.file, text: edited, summary: "\(pin.file): chart version \(pin.version) → \(target.chart)",
                            subject: "longhorn: upgrade to \(target) (chart \(pin.version) → \(target.chart))",
                            done: "Longhorn runs \(target), every attached volume healthy")
    }

    static func observe(_ kube: KubeClient, source: GitOpsSource) async throws -> ReconcileView {
        let repository = try await kube.get(FluxGitRepository.self, source.name, namespace: source.namespace)
        let releases = try await kube.list(FluxHelmRelease.self)
        let release = releases.first { $0.json[path: "spec", "chart", "spec", "chart"]?.string == "longhorn" }
        let setting = try? await kube.get(LonghornSetting.self, "current-longhorn-version", namespace: "longhorn-system")
        let volumes = try await kube.list(LonghornVolume.self, namespace: "longhorn-system")
        return ReconcileView(sourceRevision: repository.json[path: "status", "artifact", "revision"]?.string,
                             release: release.map(FluxApplyStatus.init) ?? FluxApplyStatus(), longhornVersion: setting?.value,
                             unhealthyVolumes: volumes.filter { $0.state == "attached" && $0.robustness != "healthy" }.map(\.name))
    }
}

/// Where a Git repository pins Longhorn, and how to change it: the HelmRelease whose chart is
/// `longhorn` (`spec.chart.spec.version`). Only that one line changes, so the operator's
/// formatting, comments and other values stay as they were. Pure text in, text out.
enum LonghornManifest {
    struct Pin: Equatable {
        var file: String
        var version: String
    }

    /// The chart version of every Longhorn HelmRelease in `files` (path → text).
    static func pins(in files: [String: String]) -> [Pin] {
        files.sorted { $0.key < $1.key }.flatMap { path, text in
            chartVersions(text).map { Pin(file: path, version: $0) }
        }
    }

    static func chartVersions(_ text: String) -> [String] {
        guard text.contains("HelmRelease"), let documents = try? Yams.load_all(yaml: text) else { return [] }
        return documents.compactMap { document in
            guard let document = document as? [String: Any], document["kind"] as? String == "HelmRelease",
                  let chart = ((document["spec"] as? [String: Any])?["chart"] as? [String: Any])?["spec"] as? [String: Any],
                  chart["chart"] as? String == "longhorn", let version = chart["version"] else { return nil }
            return "\(version)"
        }
    }

    /// `text` with the Longhorn HelmRelease's chart version set to `version`; nil when the file
    /// holds no such line or more than one Longhorn HelmRelease. The result is parsed again and
    /// must name exactly `version`.
    static func setting(_ version: String, in text: String) -> String? {
        var lines = text.components(separatedBy: "\n")
        var documentStart = 0
        var edited: Int?
        for index in lines.indices where lines[index].hasPrefix("---") || index == lines.count - 1 {
            let end = lines[index].hasPrefix("---") ? index : index + 1
            let document = lines[documentStart..<end]
            if document.contains(where: { $0.trimmingCharacters(in: .whitespaces) == "kind: HelmRelease" }),
               let chartLine = document.firstIndex(where: { Self.value(of: "chart", in: $0) == "longhorn" }) {
                guard edited == nil else { return nil }
                // The version sits beside `chart: longhorn` in the same mapping (same indentation).
                let indent = lines[chartLine].prefix { $0 == " " }.count
                guard let versionLine = document.firstIndex(where: { line in
                    line.prefix { $0 == " " }.count == indent && Self.value(of: "version", in: line) != nil
                }) else { return nil }
                guard let replaced = Self.replacingValue(in: lines[versionLine], with: version) else { return nil }
                lines[versionLine] = replaced
                edited = versionLine
            }
            documentStart = index + 1
        }
        guard edited != nil else { return nil }
        let result = lines.joined(separator: "\n")
        return chartVersions(result) == [version] ? result : nil
    }

    /// `line` (a `version: X` line) with only the value X replaced: quotes, spacing and a trailing
    /// comment stay as written.
    static func replacingValue(in line: String, with value: String) -> String? {
        guard let key = line.range(of: "version:") else { return nil }
        var start = key.upperBound
        while start < line.endIndex, line[start] == " " { start = line.index(after: start) }
        guard start < line.endIndex else { return nil }
        let quote = line[start]
        if quote == "\"" || quote == "'" {
            let inner = line.index(after: start)
            guard let close = line[inner...].firstIndex(of: quote) else { return nil }
            return String(line[..<inner]) + value + String(line[close...])
        }
        let end = line[start...].firstIndex(where: { $0 == " " || $0 == "\t" }) ?? line.endIndex
        return String(line[..<start]) + value + String(line[end...])
    }

    /// The scalar after `key:` on `line` (quotes and a trailing comment removed), if the line is that key.
    static func value(of key: String, in line: String) -> String? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("\(key):") else { return nil }
        var value = String(trimmed.dropFirst(key.count + 1))
        if let comment = value.range(of: " #") { value = String(value[..<comment.lowerBound]) }
        return value.trimmingCharacters(in: CharacterSet(charactersIn: " \"'"))
    }
}

/// A Longhorn version as Longhorn tags it (`v1.8.2`; the chart drops the `v`).
struct LonghornVersion: Comparable, CustomStringConvertible {
    let major: Int, minor: Int, patch: Int

    init?(_ text: String) {
        let parts = (text.hasPrefix("v") ? String(text.dropFirst()) : text).split(separator: ".").map { Int($0) }
        guard parts.count == 3, let major = parts[0], let minor = parts[1], let patch = parts[2] else { return nil }
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    var description: String { "v\(major).\(minor).\(patch)" }
    var chart: String { "\(major).\(minor).\(patch)" }

    static func < (a: LonghornVersion, b: LonghornVersion) -> Bool { (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch) }

    /// Longhorn upgrades one minor at a time (x.y → x.(y+1), patches within a minor freely) and
    /// never down (https://longhorn.io/docs/latest/deploy/upgrade/); nil when `target` is a valid
    /// next step from `installed` (or is `installed`), else the refusal.
    static func refusal(from installed: LonghornVersion, to target: LonghornVersion) -> LonghornRefusal? {
        if target < installed { return .downgrade(installed: installed, target: target) }
        if target.major != installed.major || target.minor > installed.minor + 1 { return .skipsMinor(installed: installed, target: target) }
        return nil
    }
}

/// What the cluster shows while Flux takes a commit, judged without I/O.
struct ReconcileView: Equatable {
    /// `status.artifact.revision` of the GitRepository (`main@sha1:<sha>`).
    var sourceRevision: String?
    /// The Longhorn HelmRelease; its revisions are chart versions.
    var release: FluxApplyStatus
    /// `current-longhorn-version`.
    var longhornVersion: String?
    /// Attached volumes that are not `healthy`.
    var unhealthyVolumes: [String]

    typealias Verdict = ReconcileVerdict

    /// Where a change to `chart` at commit `sha` stands.
    func verdict(commit sha: String, chart: String, version: String) -> Verdict {
        if let waiting = ReconcileVerdict.unfetched(sha, source: sourceRevision) { return waiting }
        if let verdict = release.verdict(on: { $0 == chart }, failed: "the HelmRelease failed to install chart \(chart)",
                                         waiting: "the HelmRelease has not installed chart \(chart) yet") { return verdict }
        guard longhornVersion == version else {
            return .waiting("Longhorn reports \(longhornVersion ?? "no version") (current-longhorn-version), not \(version)")
        }
        guard unhealthyVolumes.isEmpty else {
            return .waiting("volumes not healthy yet: \(unhealthyVolumes.prefix(5).joined(separator: ", "))")
        }
        return .done
    }
}
