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

    public enum Check: Equatable, Sendable {
        /// A Deployment, DaemonSet or StatefulSet that must be fully rolled out.
        case workload(WorkloadObservation.Kind, namespace: String, name: String)
        case url(URLCheck)
    }

    public var checks: [Check] = []

    /// Checks one configuration may declare: each is read at every `validate --applications`.
    public static let countMax = 100
}

extension ControllerConfig {
    /// `validate.applications`: a list of `{kind: Deployment|DaemonSet|StatefulSet, namespace, name}` and
    /// `{url, status (200), timeout (10s), caFile}` entries.
    static func parseValidate(_ validate: ConfigFields, resolve: (String) -> String,
                              url: (ConfigFields, String) throws(ConfigError) -> String?) throws(ConfigError) -> ApplicationChecks {
        var checks = ApplicationChecks()
        for entry in try validate.sections("applications", countMax: ApplicationChecks.countMax) ?? [] {
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
                throw entry.error("kind", "is required: Deployment, DaemonSet or StatefulSet, with namespace and name (or give url for an HTTP check)")
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
