import Yams

/// What a Flux install manifest holds, read the way kustomize-controller applies it (comments such
/// as `gotk-components.yaml`'s header play no part): its objects, the Flux versions they are
/// labelled with, and each Deployment's image. Shared by `upkeep update --component flux`, which
/// checks a release's `install.yaml` against the repository's components, and the sandbox's Flux,
/// which applies committed components.
public enum FluxManifest {
    /// The CRD whose `app.kubernetes.io/version` label `flux version` reads as the installed
    /// Flux version (the manifest labels every Flux object so; this CRD is in every install).
    public static let versionCRD = "gitrepositories.source.toolkit.fluxcd.io"

    /// `flux install`'s default components; `--components-extra` adds the image controllers.
    public static let defaultComponents = ["source-controller", "kustomize-controller", "helm-controller", "notification-controller"]

    /// `Deployment/flux-system/source-controller`.
    public struct ObjectKey: Hashable, Comparable, Sendable, CustomStringConvertible {
        public var kind: String
        public var namespace: String
        public var name: String
        public var description: String { namespace.isEmpty ? "\(kind)/\(name)" : "\(kind)/\(namespace)/\(name)" }
        public static func < (a: ObjectKey, b: ObjectKey) -> Bool { a.description < b.description }
    }

    public struct Contents: Equatable, Sendable {
        public var objects: Set<ObjectKey> = []
        /// `app.kubernetes.io/version` of the objects that are `app.kubernetes.io/part-of: flux`.
        public var versions: Set<String> = []
        /// Deployment name → its first container's image.
        public var images: [String: String] = [:]

        /// The one Flux version the manifest installs; nil when it names none or several.
        public var version: String? { versions.count == 1 ? versions.first : nil }
    }

    /// Nil when `text` is not YAML.
    public static func contents(_ text: String) -> Contents? {
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
}
