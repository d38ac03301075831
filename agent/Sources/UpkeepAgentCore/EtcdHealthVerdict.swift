/// Judges the embedded etcd cluster from what its members answered: the `etcdHealth` method's
/// decision, kept apart from the HTTP calls that gather the answers. Pure.
public enum EtcdHealthVerdict {
    /// A member as the node's etcd listed it.
    public struct Member: Equatable, Sendable {
        /// The member id as the JSON gateway writes it (a decimal uint64).
        public var id: String
        /// Empty for a member added but not started.
        public var name: String
        public var clientURLs: [String]

        public init(id: String, name: String, clientURLs: [String]) {
            self.id = id
            self.name = name
            self.clientURLs = clientURLs
        }
    }

    /// What asking one member's `/health` came to.
    public enum Answer: Equatable, Sendable {
        /// An HTTP answer: its status and the `health` (and `reason`) fields of its JSON body,
        /// nil when the body held none.
        case answered(status: Int, health: String?, reason: String?)
        /// No answer (refused, reset, or not within the bound): why.
        case noAnswer(String)
    }

    public struct Status: Equatable, Sendable {
        /// In hex, as etcdctl prints member ids.
        public var id: String
        public var name: String
        public var clientURLs: [String]
        public var healthy: Bool
        public var message: String
    }

    /// Each member's status, in the order listed, and whether more than half are healthy. A
    /// member with no client URL (added, never started) has no answer and is not healthy.
    public static func judge(_ members: [Member], answers: [String: Answer]) -> (members: [Status], quorum: Bool) {
        let statuses = members.map { member in
            let (healthy, message) = verdict(member, answers[member.id])
            return Status(id: hex(member.id), name: member.name, clientURLs: member.clientURLs, healthy: healthy, message: message)
        }
        let healthy = statuses.filter(\.healthy).count
        return (statuses, !statuses.isEmpty && healthy * 2 > statuses.count)
    }

    /// Healthy only on 200 with `"health":"true"` (https://etcd.io/docs/v3.5/op-guide/monitoring/#health-check).
    static func verdict(_ member: Member, _ answer: Answer?) -> (Bool, String) {
        guard !member.clientURLs.isEmpty else { return (false, "not started: the member has no client URL yet") }
        switch answer {
        case nil:
            return (false, "not asked")
        case .noAnswer(let why):
            return (false, why)
        case .answered(let status, let health, let reason):
            let said = "health \(health ?? "missing")" + (reason.map { $0.isEmpty ? "" : " (\($0))" } ?? "")
            if status == 200 && health == "true" { return (true, said) }
            return (false, "answered \(status): \(said)")
        }
    }

    /// A decimal uint64 id in lower-case hex; anything else as given.
    static func hex(_ id: String) -> String {
        guard let value = UInt64(id) else { return id }
        return String(value, radix: 16)
    }
}
