import UpkeepRollout
import UpkeepYAML

/// `validate:` in upkeep.yaml: the checks `upkeep validate --applications` runs
/// (docs/validate.md, "Applications").
public struct ApplicationChecks: Equatable, Sendable {
    /// An HTTP(S) URL that must answer `status` to a GET, within `timeoutSeconds`.
    public struct URLCheck: Equatable, Sendable {
        public var url: String
        public var status: Int
        public var timeoutSeconds: Int
        /// Trust only these CAs (PEM) for https; nil: the system's.
        public var caFile: String?
    }

    /// A PromQL instant query, asked of `gates.prometheus`, whose every sample must be below `below`.
    public struct QueryCheck: Equatable, Sendable {
        public var query: String
        public var below: Double
        /// `whenEmpty: healthy`: a query that matches nothing passes (by default it does not).
        public var emptyIsHealthy: Bool
    }

    public enum Check: Equatable, Sendable {
        /// A Deployment, DaemonSet or StatefulSet that must be fully rolled out.
        case workload(WorkloadObservation.Kind, namespace: String, name: String)
        case url(URLCheck)
        case query(QueryCheck)
    }

    public var checks: [Check] = []

    /// Checks one configuration may declare: each is read at every `validate --applications`.
    public static let countMax = 100
    /// Longest query declared: the check's name carries it.
    public static let queryBytesMax = 4096
}

extension ControllerConfig {
    /// `validate.applications`: a list of `{kind: Deployment|DaemonSet|StatefulSet, namespace, name}`,
    /// `{url, status (200), timeout (10s), caFile}` and `{prometheus: PROMQL, below, whenEmpty (unhealthy)}`
    /// entries; a query needs `gates.prometheus` (`prometheusConfigured`), the server it asks.
    static func parseValidate(_ validate: ConfigFields, resolve: (String) -> String, prometheusConfigured: Bool,
                              url: (ConfigFields, String) throws(ConfigError) -> String?) throws(ConfigError) -> ApplicationChecks {
        var checks = ApplicationChecks()
        for entry in try validate.sections("applications", countMax: ApplicationChecks.countMax) ?? [] {
            if entry.has("prometheus") {
                guard let query = try entry.string("prometheus"), !query.isEmpty, query.utf8.count <= ApplicationChecks.queryBytesMax else {
                    throw entry.error("prometheus", "must be a PromQL instant query of at most \(ApplicationChecks.queryBytesMax) bytes")
                }
                guard prometheusConfigured else {
                    throw entry.error("prometheus", "needs a Prometheus to ask: set gates.prometheus.url (docs/configuration.md)")
                }
                guard let text = try entry.string("below"), let below = Double(text), below.isFinite else {
                    throw entry.error("below", "is required: the number every sample of the query must stay below, e.g. below: 0.9")
                }
                var emptyIsHealthy = false
                if let when = try entry.string("whenEmpty") {
                    guard when == "healthy" || when == "unhealthy" else {
                        throw entry.error("whenEmpty", "must be healthy or unhealthy (what a query that matches nothing means); is \"\(when)\"")
                    }
                    emptyIsHealthy = when == "healthy"
                }
                try entry.rejectUnknown(["prometheus", "below", "whenEmpty"])
                checks.checks.append(.query(ApplicationChecks.QueryCheck(query: query, below: below, emptyIsHealthy: emptyIsHealthy)))
                continue
            }
            if entry.has("url") {
                guard let address = try url(entry, "url") else { throw entry.error("url", "must be an http:// or https:// URL") }
                let status = try entry.int("status", in: 100...599) ?? 200
                let timeout = try entry.duration("timeout", in: 1...120) ?? 10
                let caFile = try entry.string("caFile").map(resolve)
                try entry.rejectUnknown(["url", "status", "timeout", "caFile"])
                checks.checks.append(.url(ApplicationChecks.URLCheck(url: address, status: status, timeoutSeconds: timeout, caFile: caFile)))
                continue
            }
            guard let kindText = try entry.string("kind") else {
                throw entry.error("kind", "is required: Deployment, DaemonSet or StatefulSet, with namespace and name (or give url for an HTTP check, prometheus for a query)")
            }
            guard let kind = WorkloadObservation.Kind(rawValue: kindText) else {
                throw entry.error("kind", "must be Deployment, DaemonSet or StatefulSet; is \"\(kindText)\"")
            }
            guard let name = try entry.string("name"), !name.isEmpty else { throw entry.error("name", "is required: the \(kind.rawValue)'s name") }
            let namespace = try entry.string("namespace") ?? "default"
            try entry.rejectUnknown(["kind", "namespace", "name"])
            checks.checks.append(.workload(kind, namespace: namespace, name: name))
        }
        try validate.rejectUnknown(["applications", "afterChange"])
        return checks
    }

    /// `validate.afterChange`: `[versions]` (the default), any of cluster, flux, storage,
    /// networking, applications, versions, or `[all]`; `[]` runs none.
    static func afterChange(_ validate: ConfigFields) throws(ConfigError) -> [ValidationArea]? {
        guard let names = try validate.strings("afterChange", countMax: 8) else { return nil }
        if names == ["all"] { return ValidationArea.allCases }
        var areas: [ValidationArea] = []
        for name in names {
            guard let area = ValidationArea(rawValue: name) else {
                throw validate.error("afterChange", "\"\(name)\" is not a group of checks: give any of "
                                     + ValidationArea.allCases.map(\.rawValue).joined(separator: ", ") + ", or [all], or [] for none")
            }
            if !areas.contains(area) { areas.append(area) }
        }
        // In the order `upkeep validate` runs them.
        return ValidationArea.allCases.filter(areas.contains)
    }
}
