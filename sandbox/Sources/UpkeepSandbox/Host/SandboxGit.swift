import Foundation
import UpkeepKube
import UpkeepProcess
import Yams

/// The Git repository the sandbox's Flux watches: a real bare repository `DIR/git/fleet.git`
/// (branch `main`, URL `file://…`) holding what `flux bootstrap` and a homelab add to it: the Flux
/// components with their `# Flux Version:` header, and Longhorn as a HelmRelease. The sandbox
/// process polls the branch and hands each new commit's pinned versions to the model, as Flux's
/// source and helm controllers would; `upkeep update` commits to it like to any Flux repository.
public struct SandboxGit: Sendable {
    public let bare: String
    public var url: String { "file://\(bare)" }
    public static let branch = "main"
    public static let fluxComponentsPath = "clusters/sandbox/flux-system/gotk-components.yaml"
    public static let longhornPath = "clusters/sandbox/infrastructure/longhorn.yaml"

    /// Makes the repository with its first commit (when it does not exist yet).
    static func create(directory: String, spec: ClusterSpec) async throws -> SandboxGit {
        let git = SandboxGit(bare: "\(directory)/git/fleet.git")
        if FileManager.default.fileExists(atPath: "\(git.bare)/HEAD") { return git }
        let work = "\(directory)/git/seed"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        try await run(["init", "-q", "--bare", "-b", branch, git.bare])
        try await run(["init", "-q", "-b", branch, work])
        let chart = spec.longhornVersion.hasPrefix("v") ? String(spec.longhornVersion.dropFirst()) : spec.longhornVersion
        try write(FluxManifests.components(version: spec.fluxVersion), to: "\(work)/\(fluxComponentsPath)")
        try write(longhornRelease(chart: chart), to: "\(work)/\(longhornPath)")
        try await run(["-C", work, "add", "-A"])
        try await run(["-C", work, "commit", "-q", "-m", "Add Flux sync manifests"])
        try await run(["-C", work, "push", "-q", git.url, branch])
        return git
    }

    static func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        let outcome = try await ProcessRun.run("git", arguments, environment: Git.environment(identity: "flux", hermetic: true), timeoutSeconds: 60)
        guard outcome.status == 0 else { throw SandboxError("git \(arguments.joined(separator: " ")) failed: \(outcome.output)") }
        return outcome.output
    }

    /// The commit the branch points at, read from the repository's files (no process per poll).
    func head() -> String? {
        if let text = try? String(contentsOfFile: "\(bare)/refs/heads/\(Self.branch)", encoding: .utf8) {
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let packed = (try? String(contentsOfFile: "\(bare)/packed-refs", encoding: .utf8)) ?? ""
        return packed.split(separator: "\n").first { $0.hasSuffix(" refs/heads/\(Self.branch)") }.map { String($0.prefix(40)) }
    }

    /// What commit `sha` pins: Longhorn's chart version, and the Flux version and controller
    /// images its components manifest installs (nil when absent).
    func versions(at sha: String) async -> (longhornChart: String?, flux: (version: String, images: [String: String])?) {
        let longhorn = try? await Self.run(["--git-dir", bare, "show", "\(sha):\(Self.longhornPath)"])
        let flux = try? await Self.run(["--git-dir", bare, "show", "\(sha):\(Self.fluxComponentsPath)"])
        return (longhorn.flatMap(Self.longhornChart), flux.flatMap(FluxManifests.applied))
    }

    /// `spec.chart.spec.version` of the HelmRelease whose chart is `longhorn`.
    static func longhornChart(_ manifest: String) -> String? {
        guard let documents = try? Yams.load_all(yaml: manifest) else { return nil }
        for case let document as [String: Any] in documents where document["kind"] as? String == "HelmRelease" {
            let chart = ((document["spec"] as? [String: Any])?["chart"] as? [String: Any])?["spec"] as? [String: Any]
            if chart?["chart"] as? String == "longhorn" {
                return (chart?["version"] as? String) ?? (chart?["version"]).map { "\($0)" }
            }
        }
        return nil
    }

    static func longhornRelease(chart: String) -> String {
        """
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata:
          name: longhorn
          namespace: flux-system
        spec:
          interval: 1h
          url: https://charts.longhorn.io
        ---
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: longhorn
          namespace: longhorn-system
        spec:
          interval: 1h
          chart:
            spec:
              chart: longhorn
              version: "\(chart)"
              sourceRef:
                kind: HelmRepository
                name: longhorn
                namespace: flux-system
          values:
            defaultSettings:
              nodeDrainPolicy: block-if-contains-last-replica

        """
    }
}
