import UpkeepKube

/// Where the simulated API keeps each object in the datastore: the kube-apiserver's keys,
/// `/registry/<resource>/<namespace>/<name>` (cluster-scoped: `/registry/<resource>/<name>`).
/// Built-in kinds use the resource alone (`/registry/deployments/…`, `/registry/leases/…`;
/// Nodes keep their historical `/registry/minions/…`, Services `/registry/services/specs/…`), custom resources and CRDs the group too
/// (`/registry/longhorn.io/volumes/…`), as the apiserver's storage prefixes do
/// (`SpecialDefaultResourcePrefixes` in
/// https://github.com/kubernetes/kubernetes/blob/v1.32.0/pkg/kubeapiserver/default_storage_factory_builder.go;
/// the group/plural prefix of custom resources in
/// https://github.com/kubernetes/apiextensions-apiserver/blob/v0.32.0/pkg/apiserver/customresource_handler.go).
///
/// Values are the objects' JSON (the apiserver writes protobuf for built-in kinds and JSON for
/// custom resources; nothing here reads the bytes but the sandbox) without `resourceVersion`,
/// which is the key's `mod_revision` when read back
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
public enum RegistryKeys {
    public static let root = "/registry/"
    /// Keys of the sandbox's own, beside the objects (the storage minor): never read as objects.
    public static let sandboxPrefix = "/registry/upkeep-sandbox/"

    static let builtInGroups: Set<String> = ["", "apps", "policy", "coordination.k8s.io"]

    /// `/registry/<resource>/` for `type`.
    public static func prefix(of type: ResourceType) -> String {
        if type == .nodes { return "/registry/minions/" }
        if type == .services { return "/registry/services/specs/" }
        return builtInGroups.contains(type.group) ? "/registry/\(type.plural)/" : "/registry/\(type.group)/\(type.plural)/"
    }

    public static func key(_ type: ResourceType, namespace: String?, name: String) -> String {
        if type.namespaced, let namespace { return "\(prefix(of: type))\(namespace)/\(name)" }
        return "\(prefix(of: type))\(name)"
    }

    /// The types the API serves, by key prefix.
    static let typesByPrefix: [String: ResourceType] = Dictionary(
        ServedResource.all.map { (prefix(of: $0.type), $0.type) }, uniquingKeysWith: { first, _ in first })

    /// The object a key-value holds, its `resourceVersion` the key's `mod_revision`; nil for keys
    /// that are not objects of a served type, or values that are not JSON objects.
    public static func object(_ kv: Gateway.KeyValue) -> (ResourceType, JSON)? {
        guard kv.key.hasPrefix(root), !kv.key.hasPrefix(sandboxPrefix) else { return nil }
        let type = typesByPrefix.first { kv.key.hasPrefix($0.key) }?.value
        guard let type, var object = try? JSON.parse(bytes: kv.value), object.object != nil else { return nil }
        let rest = kv.key.dropFirst(prefix(of: type).count).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == (type.namespaced ? 2 : 1), object[path: "metadata", "name"]?.string == String(rest.last ?? "") else { return nil }
        object[path: "metadata", "resourceVersion"] = .string(String(kv.modRevision))
        return (type, object)
    }

    /// The bytes stored for `object`: its JSON without `resourceVersion`.
    public static func value(_ object: JSON) -> [UInt8] {
        var stored = object
        stored[path: "metadata", "resourceVersion"] = nil
        return stored.serialized()
    }

    /// The transaction that writes `changes` if, and only if, every key still has the revision
    /// the view knew (0 for an absent key), as the apiserver guards its writes.
    public static func transaction(_ changes: [StoredChange]) -> Gateway.TxnRequest {
        var compare: [Gateway.Compare] = []
        var success: [Gateway.Operation] = []
        for change in changes {
            let key = key(change.type, namespace: change.namespace, name: change.name)
            compare.append(Gateway.Compare(key: key, .modRevision(change.previousRevision ?? 0)))
            if let object = change.object {
                success.append(.put(key: key, value: value(object)))
            } else {
                success.append(.deleteRange(key: key, rangeEnd: nil))
            }
        }
        return Gateway.TxnRequest(compare: compare, success: success)
    }
}
