import UpkeepKube

/// Every object of the simulated cluster, by resource type and `namespace/name`.
///
/// Assigns `uid`, `resourceVersion` (one counter for the whole store, as etcd's revision),
/// `creationTimestamp` and `generation`, and bumps `resourceVersion` only on a real change.
/// It never decides behaviour: the model and the API layer do.
public struct ObjectStore: Sendable {
    private var collections: [ResourceType: [String: JSON]] = [:]
    public private(set) var revision: Int64 = 1
    private var uidCounter: UInt64 = 0

    public init() {}

    static func key(_ namespace: String?, _ name: String) -> String {
        if let namespace { "\(namespace)/\(name)" } else { name }
    }

    public func get(_ type: ResourceType, _ namespace: String?, _ name: String) -> JSON? {
        collections[type]?[Self.key(type.namespaced ? namespace : nil, name)]
    }

    /// Objects of `type`, in `namespace` (all when `nil`), sorted by namespace then name.
    public func list(_ type: ResourceType, namespace: String? = nil) -> [JSON] {
        guard let collection = collections[type] else { return [] }
        let prefix = namespace.map { "\($0)/" }
        return collection.keys.sorted().compactMap { key in
            if let prefix, type.namespaced, !key.hasPrefix(prefix) { return nil }
            return collection[key]
        }
    }

    public func count(_ type: ResourceType) -> Int { collections[type]?.count ?? 0 }

    /// Stores a new object; `nil` if one of that name exists. Fills in the server-owned metadata.
    public mutating func create(_ type: ResourceType, _ object: JSON, now: Double) -> JSON? {
        var object = object
        let name = object[path: "metadata", "name"]?.string ?? ""
        let namespace = type.namespaced ? object[path: "metadata", "namespace"]?.string : nil
        let key = Self.key(namespace, name)
        guard collections[type]?[key] == nil else { return nil }
        revision += 1
        uidCounter += 1
        object["apiVersion"] = .string(type.apiVersion)
        object["kind"] = .string(type.kind)
        object[path: "metadata", "uid"] = .string(Self.uid(uidCounter))
        object[path: "metadata", "resourceVersion"] = .string(String(revision))
        object[path: "metadata", "creationTimestamp"] = .string(KubeTime.format(now))
        object[path: "metadata", "generation"] = 1
        if !type.namespaced { object[path: "metadata", "namespace"] = nil }
        collections[type, default: [:]][key] = object
        return object
    }

    /// Replaces a stored object. Bumps `resourceVersion` when anything changed and `generation`
    /// when `spec` (or, for kinds without one, anything but metadata and status) changed.
    @discardableResult
    public mutating func update(_ type: ResourceType, _ object: JSON) -> JSON {
        var object = object
        let name = object[path: "metadata", "name"]?.string ?? ""
        let namespace = type.namespaced ? object[path: "metadata", "namespace"]?.string : nil
        let key = Self.key(namespace, name)
        guard let old = collections[type]?[key] else { preconditionFailure("update of absent \(type) \(key)") }
        // Server-owned fields cannot be changed by an update.
        for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
            object[path: "metadata", field] = old[path: "metadata", field]
        }
        object["apiVersion"] = old["apiVersion"]
        object["kind"] = old["kind"]
        if object == old { return old }
        if Self.specOf(object) != Self.specOf(old) {
            object[path: "metadata", "generation"] = .int((old[path: "metadata", "generation"]?.int ?? 1) + 1)
        }
        revision += 1
        object[path: "metadata", "resourceVersion"] = .string(String(revision))
        collections[type]![key] = object
        return object
    }

    @discardableResult
    public mutating func delete(_ type: ResourceType, _ namespace: String?, _ name: String) -> JSON? {
        let key = Self.key(type.namespaced ? namespace : nil, name)
        guard let old = collections[type]?[key] else { return nil }
        revision += 1
        collections[type]![key] = nil
        return old
    }

    /// Applies `change` to the stored object, if present, and stores the result.
    public mutating func modify(_ type: ResourceType, _ namespace: String?, _ name: String, _ change: (inout JSON) -> Void) {
        guard var object = get(type, namespace, name) else { return }
        change(&object)
        update(type, object)
    }

    private static func specOf(_ object: JSON) -> JSON {
        if let spec = object["spec"] { return spec }
        var rest = object
        rest["metadata"] = nil
        rest["status"] = nil
        return rest
    }

    /// A UUID-shaped identifier, unique per store and reproducible from the counter.
    static func uid(_ counter: UInt64) -> String {
        var x = counter &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 29
        let a = x, b = (x &* 0xBF58_476D_1CE4_E5B9) ^ counter
        func hex(_ v: UInt64, _ digits: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, digits - s.count)) + s.suffix(digits)
        }
        return "\(hex(a >> 32, 8))-\(hex((a >> 16) & 0xFFFF, 4))-4\(hex(a & 0xFFF, 3))-\(hex(0x8000 | (b >> 48) & 0x3FFF, 4))-\(hex(b & 0xFFFF_FFFF_FFFF, 12))"
    }
}
