import Foundation
import NIOHTTP1
import UpkeepCore
import UpkeepHTTP
import UpkeepKube
import UpkeepSandbox
import UpkeepUpdates
import Yams

/// Flux's own components in a bootstrapped repository (`<path>/flux-system/gotk-components.yaml`,
/// written by `flux install --export`) and how to replace them with a release's `install.yaml`
/// (https://fluxcd.io/flux/installation/upgrade/: regenerate the components and commit; Flux
/// applies them to itself). The replacement is refused whenever it would not be what the `flux`
/// CLI of the new version writes for this cluster: extra components, objects that would be
/// pruned, options such as `--network-policy=false` or `--registry`. Pure text in, text out.
enum FluxComponents {
    static let fileName = "gotk-components.yaml"
    static let defaultComponents = ["source-controller", "kustomize-controller", "helm-controller", "notification-controller"]
    static let registry = "ghcr.io/fluxcd/"

    /// The header `flux install --export` writes: `# Flux Version: v2.4.0`, `# Components: a,b,c`.
    struct Header: Equatable {
        var version: String
        var components: [String]
    }

    static func header(_ text: String) -> Header? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(10)
        func value(_ key: String) -> String? {
            lines.first { $0.hasPrefix("# \(key): ") }.map { String($0.dropFirst(key.count + 4)).trimmingCharacters(in: .whitespaces) }
        }
        guard let version = value("Flux Version") else { return nil }
        let components = value("Components")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []
        return Header(version: version, components: components)
    }

    /// `Deployment/flux-system/source-controller`.
    struct ObjectKey: Hashable, Comparable, CustomStringConvertible {
        var kind: String
        var namespace: String
        var name: String
        var description: String { namespace.isEmpty ? "\(kind)/\(name)" : "\(kind)/\(namespace)/\(name)" }
        static func < (a: ObjectKey, b: ObjectKey) -> Bool { a.description < b.description }
    }

    /// What a manifest installs: its objects, the Flux versions they are labelled with, and the
    /// image of each controller Deployment.
    struct Contents: Equatable {
        var objects: Set<ObjectKey> = []
        var versions: Set<String> = []
        var images: [String: String] = [:]
    }

    static func contents(_ text: String) -> Contents? {
        guard let documents = try? Yams.load_all(yaml: text) else { return nil }
        var contents = Contents()
        for case let document as [String: Any] in documents {
            guard let kind = document["kind"] as? String, let metadata = document["metadata"] as? [String: Any],
                  let name = metadata["name"] as? String else { continue }
            contents.objects.insert(ObjectKey(kind: kind, namespace: metadata["namespace"] as? String ?? "", name: name))
            let labels = metadata["labels"] as? [String: Any]
            if labels?["app.kubernetes.io/part-of"] as? String == "flux", let version = labels?["app.kubernetes.io/version"] as? String {
                contents.versions.insert(version)
            }
            if kind == "Deployment", let template = (document["spec"] as? [String: Any])?["template"] as? [String: Any],
               let containers = (template["spec"] as? [String: Any])?["containers"] as? [[String: Any]],
               let image = containers.first?["image"] as? String {
                contents.images[name] = image
            }
        }
        return contents
    }

    /// Why `install` (the release's install.yaml for `target`) must not replace `current` (the
    /// repository's components file, named `file` in messages); nil when it may.
    static func refusal(current: String, install: String, target: String, file: String) -> String? {
        guard let header = header(current) else {
            return "\(file) has no `# Flux Version:` header, so it was not written by `flux install --export` or `flux bootstrap`; "
                + "Upkeep only replaces generated components"
        }
        let extra = header.components.filter { !defaultComponents.contains($0) }
        if !extra.isEmpty {
            return "\(file) also installs \(extra.joined(separator: ", ")), which the release's install.yaml does not carry; regenerate it with "
                + "`flux install --components-extra=\(extra.joined(separator: ",")) --export` of \(target)"
        }
        guard let new = contents(install), !new.images.isEmpty else { return "the install.yaml of Flux \(target) holds no controller Deployments" }
        guard new.versions == [target] else {
            return "the install.yaml of Flux \(target) is labelled \(new.versions.sorted().joined(separator: ", ")), not \(target)"
        }
        guard let old = contents(current) else { return "\(file) is not valid YAML" }
        let pruned = old.objects.subtracting(new.objects).sorted()
        if !pruned.isEmpty {
            return "Flux would prune \(pruned.prefix(5).map(\.description).joined(separator: ", ")) from the cluster (\(file) holds objects install.yaml does not); "
                + "regenerate it with the `flux` CLI of \(target) and the options it was installed with"
        }
        let policies = { (contents: Contents) in contents.objects.contains { $0.kind == "NetworkPolicy" } }
        if policies(new) && !policies(old) {
            return "\(file) was generated with --network-policy=false; regenerate it with `flux install --network-policy=false --export` of \(target)"
        }
        let foreign = old.images.values.filter { !$0.hasPrefix(registry) }.sorted()
        if !foreign.isEmpty {
            return "\(file) pulls images from another registry (\(foreign.prefix(2).joined(separator: ", "))); regenerate it with "
                + "`flux install --registry=… --export` of \(target)"
        }
        return nil
    }

    /// The new components file: the header `flux install --export` writes, then the objects.
    static func rendered(install: String, target: String) -> String {
        let objects = install.split(separator: "\n", omittingEmptySubsequences: false).drop { $0 == "---" || $0.isEmpty }
        return "---\n# This manifest was generated by flux. DO NOT EDIT.\n# Flux Version: \(target)\n# Components: "
            + defaultComponents.joined(separator: ",") + "\n" + objects.joined(separator: "\n")
    }

    /// Each components file among `paths` with the Kustomization of the source that applies it:
    /// the one whose path (`./clusters/prod`) holds the file most closely. Files no
    /// Kustomization applies are left out.
    static func componentsFiles(paths: [String], kustomizationPaths: [String: String]) -> [(file: String, kustomization: String)] {
        paths.sorted().compactMap { file in
            guard (file as NSString).lastPathComponent == fileName else { return nil }
            let matches = kustomizationPaths.compactMap { name, path -> (name: String, depth: Int)? in
                let root = normalized(path)
                return root.isEmpty || file.hasPrefix(root + "/") ? (name, root.count) : nil
            }
            return matches.max { ($0.depth, $1.name) < ($1.depth, $0.name) }.map { (file, $0.name) }
        }
    }

    /// `./clusters/prod/` → `clusters/prod`; `./` → ``.
    static func normalized(_ path: String) -> String {
        var text = Substring(path)
        while text.hasPrefix("./") { text = text.dropFirst(2) }
        while text.hasPrefix("/") { text = text.dropFirst() }
        while text.hasSuffix("/") { text = text.dropLast() }
        return text == "." ? "" : String(text)
    }
}

/// What the cluster shows while Flux applies new components of itself, judged without I/O.
struct FluxReconcileView: Equatable {
    struct Controller: Equatable {
        var images: [String]
        var available: Bool
    }

    var sourceRevision: String?
    /// The Kustomization that applies the components file (`flux-system/flux-system`).
    var kustomization: String
    var applier: FluxApplyStatus
    /// The label `flux version` reads.
    var fluxVersion: String?
    /// flux-system Deployments by name.
    var controllers: [String: Controller]

    func verdict(commit sha: String, version: String, images: [String: String]) -> ReconcileVerdict {
        if let waiting = ReconcileVerdict.unfetched(sha, source: sourceRevision) { return waiting }
        if let verdict = applier.verdict(on: { $0.hasSuffix(sha) }, failed: "the Kustomization \(kustomization) failed to apply the new components",
                                         waiting: "the Kustomization \(kustomization) has not applied \(sha.prefix(12)) yet") { return verdict }
        guard fluxVersion == version else { return .waiting("Flux reports \(fluxVersion ?? "no version"), not \(version)") }
        for (name, image) in images.sorted(by: { $0.key < $1.key }) {
            guard let controller = controllers[name] else { return .waiting("no Deployment \(name) in flux-system yet") }
            guard controller.images.contains(image) else {
                return .waiting("\(name) runs \(controller.images.joined(separator: ", ")), not \(image) yet")
            }
            guard controller.available else { return .waiting("\(name) is not available yet") }
        }
        return .done
    }
}

/// `upkeep update --component flux`: Flux's components replaced by the release's install.yaml.
enum FluxUpdate {
    static let installAsset = "install.yaml"
    static let installBytesMax = 8 << 20

    /// Reads what runs, refuses what Flux does not support or Upkeep cannot do safely, and
    /// fetches and verifies the release's install.yaml, all before anything is cloned.
    static func plan(session: ClusterSession, to text: String, source: GitOpsSource) async throws -> GitOpsPlan? {
        let target: K3sVersion
        do { target = try Component.flux.version(fromTag: text) } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--to \(text): \(error)")
        }
        let kube = session.kube
        let installed: InstalledComponent
        let kustomizations: [FluxKustomization]
        do {
            let crd = try? await kube.get(CustomResourceDefinition.self, InstalledReader.fluxCRD)
            let deployments = try await kube.list(Deployment.self, namespace: InstalledReader.fluxNamespace)
            installed = InstalledReader.flux(crd: crd, deployments: deployments)
            kustomizations = try await kube.list(FluxKustomization.self)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read Flux from the cluster: \(error)")
        }
        guard installed.state == .installed, let current = installed.version else {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: Flux's version cannot be read (\(installed.source)); nothing was committed")
        }
        if current == target {
            print("nothing to do: Flux already runs \(target)")
            return nil
        }
        if let refusal = refusal(installed: current, exact: installed.exact, bootstrapped: installed.bootstrapped ?? false, target: target) {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(refusal); nothing was committed")
        }
        let install = try await fetchInstall(session: session, target: target)
        // The Kustomizations of this source that could apply a components file, by name → path.
        var found: [String: String] = [:]
        for kustomization in kustomizations {
            let reference = kustomization.json[path: "spec", "sourceRef"]
            let namespace = reference?["namespace"]?.string ?? kustomization.json[path: "metadata", "namespace"]?.string ?? ""
            guard reference?["kind"]?.string == "GitRepository", reference?["name"]?.string == source.name, namespace == source.namespace,
                  let name = kustomization.json[path: "metadata", "name"]?.string else { continue }
            let owner = kustomization.json[path: "metadata", "namespace"]?.string ?? ""
            found["\(owner)/\(name)"] = kustomization.json[path: "spec", "path"]?.string ?? "./"
        }
        let paths = found
        let expected = FluxComponents.contents(install)?.images ?? [:]
        return GitOpsPlan(component: "flux", from: current.description, to: target.description, edit: { files in
            try edit(files, install: install, target: target.description, kustomizationPaths: paths)
        }, verdict: { sha, change in
            try await observe(kube, source: source, kustomization: change.appliedBy ?? "")
                .verdict(commit: sha, version: target.description, images: expected)
        })
    }

    /// Flux upgrades from any v2.x to any later v2.x (fluxcd.io/flux/installation/upgrade);
    /// downgrades are not supported. Upkeep changes only a Flux that manages itself from Git.
    static func refusal(installed: K3sVersion, exact: Bool, bootstrapped: Bool, target: K3sVersion) -> String? {
        if !bootstrapped {
            return "Flux does not manage itself from Git here (its CRDs carry no kustomize.toolkit.fluxcd.io labels); upgrade it with `flux install`"
        }
        if !exact { return "Flux's version \(installed) is only inferred from its controllers' images; `flux version` should read it from its CRDs" }
        if installed.major != 2 || target.major != 2 { return "Upkeep upgrades Flux within v2 (\(installed) → \(target))" }
        if target < installed { return "Flux cannot be downgraded (\(installed) → \(target)); restore the components of \(target) with the flux CLI" }
        return nil
    }

    /// The release's install.yaml, its digest checked when GitHub gives one.
    static func fetchInstall(session: ClusterSession, target: K3sVersion) async throws -> String {
        let release: Release
        do {
            let list = try await session.source.releases(of: .flux, oldestInstalled: nil)
            guard let found = list.releases.first(where: { $0.version == target && !$0.draft }) else {
                throw CommandFailure(code: RolloutExitCode.refused, message: "refused: no Flux release \(target) at \(session.source); nothing was committed")
            }
            release = found
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read Flux releases from \(session.source): \(error)")
        }
        guard let asset = release.asset(named: installAsset), asset.isUploaded else {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: Flux \(target) publishes no \(installAsset); nothing was committed")
        }
        let response: HTTPResponse
        do {
            var headers = HTTPHeaders()
            headers.add(name: "Accept", value: "application/octet-stream")
            response = try await session.releaseClient.send(HTTPRequest(url: try HTTPURL(asset.downloadURL), headers: headers, redirects: .follow(max: 5)))
        } catch {
            throw CommandFailure(code: RolloutExitCode.artifact, message: "cannot fetch \(asset.downloadURL): \(error)")
        }
        guard response.isSuccess else { throw CommandFailure(code: RolloutExitCode.artifact, message: "\(asset.downloadURL): HTTP \(response.status)") }
        let bytes = response.body
        guard bytes.count <= installBytesMax else {
            throw CommandFailure(code: RolloutExitCode.artifact, message: "\(asset.downloadURL) is larger than \(installBytesMax) bytes")
        }
        if let digest = asset.digest {
            let actual = "sha256:" + SHA256.hex(bytes)
            guard actual == digest else {
                throw CommandFailure(code: RolloutExitCode.artifact, message: "\(asset.downloadURL) does not match its digest (\(digest), got \(actual)); nothing was committed")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func edit(_ files: [String: String], install: String, target: String, kustomizationPaths: [String: String]) throws -> GitOpsChange {
        let found = FluxComponents.componentsFiles(paths: Array(files.keys), kustomizationPaths: kustomizationPaths)
        guard found.count == 1, let (file, kustomization) = found.first else {
            throw CommandFailure(code: RolloutExitCode.refused, message: found.isEmpty
                ? "no \(FluxComponents.fileName) that a Kustomization of this source applies; Upkeep upgrades a Flux that `flux bootstrap` set up"
                : "several \(FluxComponents.fileName) (\(found.map(\.file).joined(separator: ", "))); pass the repository of one cluster")
        }
        let current = files[file] ?? ""
        if let refusal = FluxComponents.refusal(current: current, install: install, target: target, file: file) {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(refusal); nothing was committed")
        }
        let from = FluxComponents.header(current)?.version ?? "?"
        return GitOpsChange(file: file, text: FluxComponents.rendered(install: install, target: target),
                            summary: "\(file): components \(from) → \(target) (the release's \(installAsset), applied by \(kustomization))",
                            subject: "flux: upgrade to \(target)", done: "Flux runs \(target), every controller available", appliedBy: kustomization)
    }

    static func observe(_ kube: KubeClient, source: GitOpsSource, kustomization: String) async throws -> FluxReconcileView {
        let repository = try await kube.get(FluxGitRepository.self, source.name, namespace: source.namespace)
        let parts = kustomization.split(separator: "/").map(String.init)
        let applier = try await kube.get(FluxKustomization.self, parts.last ?? "", namespace: parts.first)
        let crd = try? await kube.get(CustomResourceDefinition.self, InstalledReader.fluxCRD)
        var controllers: [String: FluxReconcileView.Controller] = [:]
        for deployment in try await kube.list(Deployment.self, namespace: InstalledReader.fluxNamespace) {
            let containers = deployment.json[path: "spec", "template", "spec", "containers"]?.array ?? []
            controllers[deployment.name] = .init(images: containers.compactMap { $0["image"]?.string },
                                                 available: deployment.availableReplicas >= deployment.replicas)
        }
        return FluxReconcileView(sourceRevision: repository.json[path: "status", "artifact", "revision"]?.string, kustomization: kustomization,
                                 applier: FluxApplyStatus(applier),
                                 fluxVersion: crd?.json[path: "metadata", "labels", InstalledReader.versionLabel]?.string,
                                 controllers: controllers)
    }
}
