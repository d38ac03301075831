/// `coordination.k8s.io/v1` Lease (https://kubernetes.io/docs/concepts/architecture/leases/):
/// who holds it, how long it lasts past its last renewal, and how often it changed hands.
/// Times are MicroTime (`2026-12-07T10:15:00.123456Z`), read as seconds since the Unix epoch.
///
/// A typed view only: it never decides who may take a Lease (the controller's `LeaseElection`
/// does) and keeps every field it does not name on a round trip.
public struct CoordinationLease: KubeObject {
    public static let resource = ResourceType.leases
    public var json: JSON
    public init(json: JSON) { self.json = json }

    /// `spec` as the fields leader election reads and writes.
    public struct Spec: Equatable, Sendable {
        /// Empty or absent: nobody holds it (released).
        public var holderIdentity: String?
        public var leaseDurationSeconds: Int?
        public var acquireTime: Double?
        public var renewTime: Double?
        public var leaseTransitions: Int

        public init(holderIdentity: String?, leaseDurationSeconds: Int?, acquireTime: Double?, renewTime: Double?, leaseTransitions: Int) {
            self.holderIdentity = holderIdentity
            self.leaseDurationSeconds = leaseDurationSeconds
            self.acquireTime = acquireTime
            self.renewTime = renewTime
            self.leaseTransitions = leaseTransitions
        }
    }

    /// A new Lease object named `namespace/name` with `spec` (for a create).
    public init(namespace: String, name: String, spec: Spec) {
        json = ["apiVersion": .string(Self.resource.apiVersion), "kind": .string(Self.resource.kind),
                "metadata": ["name": .string(name), "namespace": .string(namespace)]]
        self.spec = spec
    }

    public var spec: Spec {
        get {
            let holder = json[path: "spec", "holderIdentity"]?.string
            return Spec(holderIdentity: holder?.isEmpty == true ? nil : holder,
                        leaseDurationSeconds: json[path: "spec", "leaseDurationSeconds"]?.int.map { Int($0) },
                        acquireTime: json[path: "spec", "acquireTime"]?.string.flatMap(KubeTime.parse),
                        renewTime: json[path: "spec", "renewTime"]?.string.flatMap(KubeTime.parse),
                        leaseTransitions: Int(json[path: "spec", "leaseTransitions"]?.int ?? 0))
        }
        set {
            let old = spec
            var spec = json["spec"]?.object ?? [:]
            spec["holderIdentity"] = newValue.holderIdentity.map(JSON.string)
            spec["leaseDurationSeconds"] = newValue.leaseDurationSeconds.map { .int(Int64($0)) }
            // A time left as it was keeps its text: a MicroTime read and written again as a
            // double could move by a microsecond.
            if newValue.acquireTime != old.acquireTime { spec["acquireTime"] = newValue.acquireTime.map { .string(KubeTime.formatMicro($0)) } }
            if newValue.renewTime != old.renewTime { spec["renewTime"] = newValue.renewTime.map { .string(KubeTime.formatMicro($0)) } }
            spec["leaseTransitions"] = .int(Int64(newValue.leaseTransitions))
            json["spec"] = .object(spec)
        }
    }
}
