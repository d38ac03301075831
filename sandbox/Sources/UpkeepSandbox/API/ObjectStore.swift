import UpkeepKube

/// Every object of the simulated cluster, by resource type and `namespace/name`.
///
/// Assigns `uid`, `resourceVersion` (one counter for the whole store, as etcd's revision),
/// `creationTimestamp` and `generation`, and bumps `resourceVersion` only on a real change.
/// It never decides behaviour: the model and the API layer do.
///
/// In memory (unit tests) every change takes the next revision. Behind a datastore
/// (`tracksChanges`), it is the API's view of the datastore (the apiserver's watch cache): the
/// changes of one operation are recorded for the datastore, which writes them in one transaction
/// at one revision, so they all take the one next revision; `confirm` then sets the revisions the
/// datastore gave them, and `StoredChange.previousRevision` is what the transaction compares.
public struct ObjectStore: Sendable {
    private var collections: [ResourceType: [String: JSON]] = [:]
    public private(set) var revision: Int64 = 1
    private var uidCounter: UInt64 = 0
    /// Records changes for a datastore instead of numbering each change on its own.
    public var tracksChanges = false
    /// Objects changed since `takeChanges`, with the revision each had before (nil: absent).
    private var touched: [ObjectKey: Int64?] = [:]
    /// The revision the changes since `takeChanges` share.
    private var operationRevision: Int64?
    /// In memory: records each change as a watch reports it, for `takeEvents` (what
    /// `SandboxCluster` feeds its `WatchCache`). Behind a datastore the events come from what the
    /// datastore confirmed instead.
    public var recordsEvents = false
    private var events: [WatchEvent] = []

    public init() {}

    struct ObjectKey: Hashable {
        var type: ResourceType
        var key: String
    }

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
        touch(type, key, previous: nil)
        let version = nextRevision()
        uidCounter += 1
        object["apiVersion"] = .string(type.apiVersion)
        object["kind"] = .string(type.kind)
        object[path: "metadata", "uid"] = .string(Self.uid(uidCounter))
        object[path: "metadata", "resourceVersion"] = .string(String(version))
        object[path: "metadata", "creationTimestamp"] = .string(KubeTime.format(now))
        object[path: "metadata", "generation"] = 1
        if !type.namespaced { object[path: "metadata", "namespace"] = nil }
        collections[type, default: [:]][key] = object
        journal(type, .added, object, previous: nil, revision: version)
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
        touch(type, key, previous: old)
        let version = nextRevision()
        object[path: "metadata", "resourceVersion"] = .string(String(version))
        collections[type]![key] = object
        journal(type, .modified, object, previous: old, revision: version)
        return object
    }

    @discardableResult
    public mutating func delete(_ type: ResourceType, _ namespace: String?, _ name: String) -> JSON? {
        let key = Self.key(type.namespaced ? namespace : nil, name)
        guard let old = collections[type]?[key] else { return nil }
        touch(type, key, previous: old)
        let version = nextRevision()
        collections[type]![key] = nil
        var gone = old
        gone[path: "metadata", "resourceVersion"] = .string(String(version))
        journal(type, .deleted, gone, previous: old, revision: version)
        return old
    }

    /// Applies `change` to the stored object, if present, and stores the result.
    public mutating func modify(_ type: ResourceType, _ namespace: String?, _ name: String, _ change: (inout JSON) -> Void) {
        guard var object = get(type, namespace, name) else { return }
        change(&object)
        update(type, object)
    }

    private mutating func journal(_ type: ResourceType, _ kind: WatchEvent.Kind, _ object: JSON, previous: JSON?, revision: Int64) {
        guard recordsEvents && !tracksChanges else { return }
        events.append(WatchEvent(type: type, kind: kind, object: object, previous: previous, revision: revision))
    }

    /// The changes recorded since the last call (`recordsEvents`), oldest first.
    public mutating func takeEvents() -> [WatchEvent] {
        defer { events = [] }
        return events
    }

    // MARK: - Behind a datastore

    /// The revision of the next change: each change's own in memory, the operation's shared one
    /// when tracking changes.
    private mutating func nextRevision() -> Int64 {
        if tracksChanges, let operationRevision { return operationRevision }
        revision += 1
        if tracksChanges { operationRevision = revision }
        return revision
    }

    private mutating func touch(_ type: ResourceType, _ key: String, previous: JSON?) {
        guard tracksChanges else { return }
        let objectKey = ObjectKey(type: type, key: key)
        if touched[objectKey] == nil {
            touched[objectKey] = .some(previous.flatMap { Self.revision(of: $0) })
        }
    }

    static func revision(of object: JSON) -> Int64? {
        object[path: "metadata", "resourceVersion"]?.string.flatMap { Int64($0) }
    }

    /// Whether anything changed since the last `takeChanges`.
    public var hasChanges: Bool { !touched.isEmpty }

    /// The changes since the last call, in key order, each with the revision the datastore holds
    /// for it (nil: absent); an object created and deleted again in between is no change.
    public mutating func takeChanges() -> [StoredChange] {
        defer {
            touched = [:]
            operationRevision = nil
        }
        return touched.compactMap { objectKey, previous -> StoredChange? in
            let object = collections[objectKey.type]?[objectKey.key]
            guard previous != nil || object != nil else { return nil }
            let (namespace, name) = Self.split(objectKey.key, namespaced: objectKey.type.namespaced)
            return StoredChange(type: objectKey.type, namespace: namespace, name: name, previousRevision: previous, object: object)
        }.sorted { ($0.type.qualifiedName, $0.namespace ?? "", $0.name) < ($1.type.qualifiedName, $1.namespace ?? "", $1.name) }
    }

    /// The datastore wrote `changes`, each at its revision in `revisions` (etcd: the
    /// transaction's for all; kine: each row's), and stands at `revision` now: the objects take
    /// theirs as `resourceVersion` (the one given here was a guess; another writer may have
    /// come between).
    public mutating func confirm(_ changes: [StoredChange], revisions: [Int64], revision confirmed: Int64) {
        precondition(changes.count == revisions.count, "one revision per change")
        revision = max(revision, confirmed)
        for (change, written) in zip(changes, revisions) where change.object != nil {
            let key = Self.key(change.namespace, change.name)
            collections[change.type]?[key]?[path: "metadata", "resourceVersion"] = .string(String(written))
        }
    }

    /// Another writer moved the datastore's revision on (a fake k3s recording its minor): the
    /// next change takes the revision after it.
    public mutating func observe(revision newer: Int64) {
        revision = max(revision, newer)
    }

    /// The objects read back from a datastore (each with its `resourceVersion`), at `revision`;
    /// uids go on from this store's counter, so none is given twice.
    public func reloaded(_ objects: [(ResourceType, JSON)], revision: Int64) -> ObjectStore {
        var store = ObjectStore()
        store.tracksChanges = tracksChanges
        store.uidCounter = uidCounter
        store.revision = revision
        for (type, object) in objects {
            let name = object[path: "metadata", "name"]?.string ?? ""
            let namespace = type.namespaced ? object[path: "metadata", "namespace"]?.string : nil
            store.collections[type, default: [:]][Self.key(namespace, name)] = object
        }
        return store
    }

    public var objectCount: Int { collections.values.reduce(0) { $0 + $1.count } }

    /// This store with uids that `other` never gave (its counter goes on after other's), the
    /// references between objects following.
    func renumbered(after other: ObjectStore) -> ObjectStore {
        var mapping: [String: String] = [:]
        var counter = other.uidCounter
        for (_, collection) in collections {
            for object in collection.values {
                guard let uid = object[path: "metadata", "uid"]?.string else { continue }
                counter += 1
                mapping[uid] = Self.uid(counter)
            }
        }
        func renamed(_ json: JSON) -> JSON {
            switch json {
            case .string(let text): .string(mapping[text] ?? text)
            case .array(let items): .array(items.map(renamed))
            case .object(let members): .object(members.mapValues(renamed))
            default: json
            }
        }
        var store = self
        store.uidCounter = counter
        store.collections = collections.mapValues { $0.mapValues(renamed) }
        return store
    }

    /// Every object, for seeding an empty datastore: all count as created.
    public mutating func markAllCreated() {
        for (type, collection) in collections {
            for key in collection.keys { touched[ObjectKey(type: type, key: key)] = .some(nil) }
        }
    }

    static func split(_ key: String, namespaced: Bool) -> (String?, String) {
        guard namespaced, let slash = key.firstIndex(of: "/") else { return (nil, key) }
        return (String(key[..<slash]), String(key[key.index(after: slash)...]))
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

/// One object changed by an operation on a store behind a datastore: what to write, and the
/// revision to compare against (optimistic concurrency, as the apiserver's GuaranteedUpdate).
public struct StoredChange: Sendable, Equatable {
    public var type: ResourceType
    public var namespace: String?
    public var name: String
    /// The key's `mod_revision` in the datastore as the store knows it; nil: the key is absent.
    public var previousRevision: Int64?
    /// The object now; nil: deleted.
    public var object: JSON?
}
