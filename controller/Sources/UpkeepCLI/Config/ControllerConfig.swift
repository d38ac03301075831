import Foundation
import UpkeepPOSIX
import UpkeepFleet
import UpkeepNotify
import UpkeepKube
import UpkeepCore
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore
import UpkeepUpdates
import UpkeepYAML

/// The controller's configuration, `upkeep.yaml` (docs/configuration.md). Every field has a
/// default that fits a controller running on a k3s server as root; relative paths are read
/// against the file's own directory, so a sandbox directory can be moved as a whole.
public struct ControllerConfig: Equatable, Sendable {
    public struct PKIPaths: Equatable, Sendable {
        public var ca = "/etc/upkeep/pki/ca.crt"
        public var certificate = "/etc/upkeep/pki/controllers/controller.crt"
        public var key = "/etc/upkeep/pki/controllers/controller.key"
        /// The deny list `upkeep pki revoke` writes; nil: `revoked.txt` beside the CA file.
        public var revoked: String?

        /// The deny list's path (docs/pki.md, "Revocation").
        public var revokedFile: String { revoked ?? ((ca as NSString).deletingLastPathComponent as NSString).appendingPathComponent("revoked.txt") }
    }

    public struct Releases: Equatable, Sendable {
        public var githubAPI = "https://api.github.com"
        /// The channel server's base URL; a trailing `/v1-release/channels` is accepted and dropped.
        public var channelServer = "https://update.k3s.io"
        /// An air-gapped mirror directory or URL (docs/check.md); when set, GitHub is not asked.
        public var mirror: String?
        /// Trust only these CAs (PEM) for HTTPS instead of the system store.
        public var caFile: String?
        /// A 0600 file holding a GitHub token.
        public var githubTokenFile: String?
        /// Accept `http://` for `githubAPI`, `channelServer` and `mirror` (warned at every use);
        /// without it an `http://` release source is refused (docs/configuration.md, "Release sources").
        public var insecure = false
        /// The PEM public key (Ed25519 or ECDSA P-256) the mirror's index must be signed with
        /// (docs/fleet.md, "Signed mirror index"); nil: the mirror is trusted as it is.
        public var indexKey: String?
    }

    /// Datastore backups taken before a rollout (docs/backups.md).
    public struct Backups: Equatable, Sendable {
        /// Take one before every new rollout (`apply`, `rollback`); `--skip-backup` overrides once.
        public var beforeApply = true
        /// Take one before a Longhorn or Flux update commits (`upkeep update`, serve's updates);
        /// a failed one refuses the update.
        public var beforeUpdate = true
        /// The 32-byte sealing key; nil: `<stateDir>/backup.key`. Keep a copy off this machine.
        public var keyFile: String?
        /// Sealed backups kept in `<stateDir>/backups`, newest first.
        public var kept = 10
        /// Bound on one backup (snapshot and transfer).
        public var timeoutSeconds = 900

        public init() {}
    }

    /// Maintenance mode (docs/maintenance.md): what it suspends, and whether rollouts use it.
    public struct Maintenance: Equatable, Sendable {
        /// Switch maintenance mode on before a rollout's first node and off after its end.
        public var suspendFlux = false
        /// The kinds of Flux object it suspends.
        public var suspend = FluxSuspendKind.defaults
        /// Only objects with these labels; nil: all of them.
        public var suspendSelector: LabelSelector?

        public init() {}
    }

    /// Longhorn updates through Git (`longhorn:`, docs/gitops.md): the snapshots taken before one.
    public struct Longhorn: Equatable, Sendable {
        /// The updates whose snapshots are kept (`longhorn.snapshots.keep`); older upkeep-labelled ones are removed.
        public var snapshotsKept = 3
        /// How long an update waits for its snapshots to be ready before refusing (`longhorn.snapshots.readyTimeoutSeconds`).
        public var snapshotReadySeconds = 300

        public init() {}
    }

    /// The join server (`upkeep join-server`, docs/enrollment.md).
    public struct Join: Equatable, Sendable {
        public var listen = "0.0.0.0:9662"
        /// HOST:PORT that nodes dial, printed in the join command; nil: `listen` when it names a
        /// host, else this machine's host name with the listen port.
        public var advertise: String?
        /// Validity of the certificates it issues (never past the CA's end).
        public var certificateDays = 365
    }

    /// Where the file was read from; nil when no file was found and only defaults apply.
    public var source: String?
    /// nil: KUBECONFIG, ~/.kube/config, /etc/rancher/k3s/k3s.yaml, in that order.
    public var kubeconfig: String?
    public var context: String?
    public var pki = PKIPaths()
    /// The port agents listen on; a node annotation `upkeep.io/agent-address: host:port` overrides it.
    public var agentPort = 9660
    /// nil: UPKEEP_STATE_DIR, /var/lib/upkeep as root, else ~/.local/state/upkeep.
    public var stateDir: String?
    public var releases = Releases()
    /// Agents upgraded at once; servers always go one at a time.
    public var concurrency = 1
    public var rollout = RolloutPolicy()
    public var backups = Backups()
    public var maintenance = Maintenance()
    public var join = Join()
    public var longhorn = Longhorn()
    /// The cluster's name in notifications; nil: this machine's host name.
    public var cluster: String?
    /// Where events are sent (docs/notifications.md).
    public var notifications: [NotificationSink] = []
    /// What `upkeep serve` checks for and rolls out on its own (docs/serve.md); nil (no
    /// `automation:` section): serve runs no controller loop.
    public var automation: AutomationPolicy?
    /// The cluster Lease `kube-system/upkeep` every operation that drives nodes holds
    /// (docs/controller.md, "The lock").
    public var lease = ClusterLease.Terms()
    /// The gates read before every wave (`gates:`; docs/planning.md, "Gates"). Their kinds, hold
    /// timeout and unreachable rule are also in `rollout.gates`, which a rollout keeps.
    public var gates = GateSettings()
    /// `validate.applications`: what `upkeep validate --applications` checks (docs/validate.md).
    public var applicationChecks = ApplicationChecks()
    /// `validate.afterChange`: the checks run after every completed rollout and GitOps update
    /// (docs/validate.md, "After every change"); empty: none.
    public var validateAfterChange: [ValidationArea] = ControllerConfig.defaultValidateAfterChange
    public static let defaultValidateAfterChange: [ValidationArea] = [.versions]
    /// The nodes a plan may change (`policy.nodes`, `exclude`, `selector`); flags override each.
    public var nodeChoice = NodeChoice()
    /// `policy.canary` and `policy.canarySoak`: the first agents alone, then a soak.
    public var canaryAgents = 0
    public var canarySoakSeconds = ControllerConfig.defaultCanarySoakSeconds

    /// How long a wave waits while a gate holds it (`gates.holdTimeout`), by default.
    public static let defaultGateHoldSeconds = 3600
    public static let defaultCanarySoakSeconds = 600

    public init() {
        rollout.gates = GatePolicy(kinds: gates.kinds, holdTimeoutSeconds: Self.defaultGateHoldSeconds)
        rollout.drain = DrainPolicy()
    }

    /// The name notifications give the cluster.
    public var clusterName: String { cluster ?? RuntimeConfiguration.hostName() }

    /// Which sinks want which events: what the state store needs to write the outbox.
    public var notificationRouting: NotificationRouting {
        NotificationRouting(cluster: clusterName, routes: notifications.map(\.route))
    }

    public static let fileName = "upkeep.yaml"

    /// The places searched, in order, when neither `--config` nor `UPKEEP_CONFIG` names a file.
    public static func searchPath(environment: [String: String], workingDirectory: String) -> [String] {
        var paths = ["\(workingDirectory)/\(fileName)"]
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            paths.append("\(xdg)/upkeep/\(fileName)")
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            paths.append("\(home)/.config/upkeep/\(fileName)")
        }
        paths.append("/etc/upkeep/\(fileName)")
        return paths
    }

    /// Finds and reads the configuration: `explicit` (from `--config`), else `UPKEEP_CONFIG`, else
    /// the first file of `searchPath` that exists, else the defaults. A named file that is missing
    /// is an error; a searched one is not.
    public static func locate(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                              workingDirectory: String = FileManager.default.currentDirectoryPath) throws(ConfigError) -> ControllerConfig {
        if let named = explicit ?? environment["UPKEEP_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            let path = named.hasPrefix("/") ? named : "\(workingDirectory)/\(named)"
            guard FileManager.default.fileExists(atPath: path) else {
                throw ConfigError(file: path, line: nil, field: "(file)",
                                  problem: "does not exist; check --config / UPKEEP_CONFIG, or run `upkeep sandbox up --dir DIR` to make one")
            }
            return try load(path: path)
        }
        for path in searchPath(environment: environment, workingDirectory: workingDirectory) where FileManager.default.fileExists(atPath: path) {
            return try load(path: path)
        }
        return ControllerConfig()
    }

    public static func load(path: String) throws(ConfigError) -> ControllerConfig {
        let text: String
        do {
            // Bounded: a device such as /dev/zero, or a huge file, is refused after 1 MiB.
            text = String(decoding: try BoundedRead.bytes(path, bytesMax: 1 << 20), as: UTF8.self)
        } catch {
            switch error {
            case .open(let code), .read(let code):
                throw ConfigError(file: path, line: nil, field: "(file)", problem: "cannot be read: \(String(cString: strerror(code)))")
            case .tooLarge:
                throw ConfigError(file: path, line: nil, field: "(file)", problem: "is larger than 1 MiB (or has no end, as a device); is it the right file?")
            }
        }
        return try parse(text, file: path)
    }

    /// `zones` gives the time zones maintenance windows name (default: the system's tzdata).
    public static func parse(_ text: String, file: String? = nil, zones: (any TimeZoneSource)? = nil) throws(ConfigError) -> ControllerConfig {
        let base = file.map { ($0 as NSString).deletingLastPathComponent } ?? FileManager.default.currentDirectoryPath
        func resolve(_ text: String) -> String {
            if text.hasPrefix("/") { return text }
            if text.hasPrefix("~/"), let home = ProcessInfo.processInfo.environment["HOME"] { return home + text.dropFirst() }
            return (base as NSString).appendingPathComponent(text)
        }
        func path(_ fields: ConfigFields, _ key: String) throws(ConfigError) -> String? {
            guard let text = try fields.string(key) else { return nil }
            guard !text.isEmpty else { throw fields.error(key, "must not be empty; leave the field out for the default") }
            return resolve(text)
        }
        func url(_ fields: ConfigFields, _ key: String) throws(ConfigError) -> String? {
            guard let text = try fields.string(key) else { return nil }
            guard let components = URLComponents(string: text), ["http", "https"].contains(components.scheme ?? ""),
                  components.host?.isEmpty == false else {
                throw fields.error(key, "must be an http:// or https:// URL with a host; is \"\(text)\"")
            }
            return text.hasSuffix("/") ? String(text.dropLast()) : text
        }

        let top = try ConfigFields.document(text, file: file, expecting: "of upkeep settings (see docs/configuration.md)")
        var config = ControllerConfig()
        config.source = file
        config.kubeconfig = try path(top, "kubeconfig")
        config.context = try top.string("context")
        if let pki = try top.section("pki") {
            config.pki.ca = try path(pki, "ca") ?? config.pki.ca
            config.pki.certificate = try path(pki, "certificate") ?? config.pki.certificate
            config.pki.key = try path(pki, "key") ?? config.pki.key
            config.pki.revoked = try path(pki, "revoked")
            try pki.rejectUnknown(["ca", "certificate", "key", "revoked"])
        }
        config.agentPort = try top.int("agentPort", in: 1...65535) ?? config.agentPort
        config.stateDir = try path(top, "stateDir")
        if let releases = try top.section("releases") {
            config.releases.githubAPI = try url(releases, "githubAPI") ?? config.releases.githubAPI
            if let channelServer = try url(releases, "channelServer") {
                let suffix = "/v1-release/channels"
                config.releases.channelServer = channelServer.hasSuffix(suffix) ? String(channelServer.dropLast(suffix.count)) : channelServer
            }
            if let mirror = try releases.string("mirror") {
                config.releases.mirror = mirror.contains("://") ? try url(releases, "mirror") : try path(releases, "mirror")
            }
            config.releases.caFile = try path(releases, "caFile")
            config.releases.githubTokenFile = try path(releases, "githubTokenFile")
            config.releases.insecure = try releases.bool("insecure") ?? false
            for (key, value) in config.releases.plainHTTPSources where !config.releases.insecure && !ReleaseTransport.isLoopback(value) {
                throw releases.error(key, ReleaseTransport.refusal(setting: "releases.\(key)", url: value, override: "releases.insecure: true"))
            }
            config.releases.indexKey = try path(releases, "indexKey")
            if config.releases.indexKey != nil, config.releases.mirror == nil {
                throw releases.error("indexKey", "signs a mirror's index; set releases.mirror too, or leave indexKey out (GitHub's downloads are checked against its releases API)")
            }
            try releases.rejectUnknown(["githubAPI", "channelServer", "mirror", "caFile", "githubTokenFile", "insecure", "indexKey"])
        }
        if let policy = try top.section("policy") {
            config.concurrency = try policy.int("concurrency", in: 1...PlanPolicy.agentConcurrencyMax) ?? config.concurrency
            var rollout = config.rollout
            let seconds = 1...604_800
            rollout.gateTimeoutSeconds = try policy.int("gateTimeoutSeconds", in: seconds) ?? rollout.gateTimeoutSeconds
            rollout.drainTimeoutSeconds = try policy.int("drainTimeoutSeconds", in: seconds) ?? rollout.drainTimeoutSeconds
            rollout.restoreDrainTimeoutSeconds = try policy.int("restoreDrainTimeoutSeconds", in: seconds) ?? rollout.restoreDrainTimeoutSeconds
            rollout.healthTimeoutSeconds = try policy.int("healthTimeoutSeconds", in: seconds) ?? rollout.healthTimeoutSeconds
            rollout.verifyTimeoutSeconds = try policy.int("verifyTimeoutSeconds", in: seconds) ?? rollout.verifyTimeoutSeconds
            rollout.rebuildTimeoutSeconds = try policy.int("rebuildTimeoutSeconds", in: seconds) ?? rollout.rebuildTimeoutSeconds
            if let watchdog = try policy.int("watchdogTimeoutSeconds", in: seconds) {
                rollout.watchdogTimeoutSeconds = watchdog
            } else {
                // Follow shorter verify/rebuild bounds so the default never contradicts them.
                rollout.watchdogTimeoutSeconds = max(rollout.watchdogTimeoutSeconds,
                                                     rollout.verifyTimeoutSeconds + rollout.rebuildTimeoutSeconds + 60)
            }
            rollout.requestTriesMax = try policy.int("requestTriesMax", in: 1...100) ?? rollout.requestTriesMax
            if let poll = try policy.int("pollIntervalMilliseconds", in: 10...600_000) { rollout.pollIntervalMilliseconds = Int64(poll) }
            rollout.autoRollback = try Self.autoRollback(policy) ?? rollout.autoRollback
            rollout.prefetchWaves = try policy.int("prefetchWaves", in: 0...10) ?? rollout.prefetchWaves
            if let drain = try policy.section("drain") {
                let (options, timeout) = try Self.parseDrain(drain, policy: policy)
                rollout.drain = options
                rollout.drainTimeoutSeconds = timeout ?? rollout.drainTimeoutSeconds
            }
            let (choice, canary, soak) = try Self.parseSelection(policy)
            config.nodeChoice = choice
            config.canaryAgents = canary ?? config.canaryAgents
            config.canarySoakSeconds = soak ?? config.canarySoakSeconds
            if let problem = rollout.problems().first {
                throw ConfigError(file: file, line: nil, field: "policy", problem: problem)
            }
            config.rollout = rollout
            try policy.rejectUnknown(["concurrency", "gateTimeoutSeconds", "drainTimeoutSeconds", "restoreDrainTimeoutSeconds",
                                      "healthTimeoutSeconds", "verifyTimeoutSeconds", "rebuildTimeoutSeconds", "watchdogTimeoutSeconds", "requestTriesMax",
                                      "pollIntervalMilliseconds", "autoRollback", "prefetchWaves", "drain", "nodes", "exclude", "selector",
                                      "canary", "canarySoak"])
        }
        if let gates = try top.section("gates") {
            let (settings, holdSeconds, passUnreachable) = try Self.parseGates(gates, resolve: resolve, url: url)
            config.gates = settings
            config.rollout.gates = GatePolicy(kinds: settings.kinds, holdTimeoutSeconds: holdSeconds, passWhenPrometheusUnreachable: passUnreachable)
        }
        if let maintenance = try top.section("maintenance") {
            if let texts = try maintenance.strings("windows", countMax: 50) {
                var windows: [MaintenanceWindow] = []
                let zones = zones ?? ZoneInfoDirectory.system(environment: ProcessInfo.processInfo.environment)
                for text in texts {
                    do { windows.append(try MaintenanceWindow(text, zones: zones)) } catch {
                        throw maintenance.error("windows", error.description)
                    }
                }
                config.rollout.maintenanceWindows = windows.isEmpty ? nil : windows
            }
            config.maintenance.suspendFlux = try maintenance.bool("suspendFlux") ?? config.maintenance.suspendFlux
            if let kinds = try maintenance.strings("suspend", countMax: FluxSuspendKind.allCases.count) {
                var chosen: [FluxSuspendKind] = []
                for text in kinds {
                    guard let kind = FluxSuspendKind(rawValue: text.lowercased()) else {
                        throw maintenance.error("suspend", "\"\(text)\" is not a kind of Flux object it suspends; "
                                                + "write some of \(FluxSuspendKind.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    if !chosen.contains(kind) { chosen.append(kind) }
                }
                guard !chosen.isEmpty else { throw maintenance.error("suspend", "must name at least one kind; leave it out for kustomizations and helmreleases") }
                config.maintenance.suspend = chosen
            }
            if let selector = try maintenance.string("suspendSelector") {
                do { config.maintenance.suspendSelector = try LabelSelector.parse(selector) } catch {
                    throw maintenance.error("suspendSelector", "\(error) (a label selector as kubectl takes it, e.g. \"upkeep.io/maintenance!=keep\")")
                }
            }
            try maintenance.rejectUnknown(["windows", "suspendFlux", "suspend", "suspendSelector"])
        }
        if let backups = try top.section("backups") {
            config.backups.beforeApply = try backups.bool("beforeApply") ?? config.backups.beforeApply
            config.backups.beforeUpdate = try backups.bool("beforeUpdate") ?? config.backups.beforeUpdate
            config.backups.keyFile = try path(backups, "keyFile")
            config.backups.kept = try backups.int("kept", in: 1...1000) ?? config.backups.kept
            config.backups.timeoutSeconds = try backups.int("timeoutSeconds", in: 10...86_400) ?? config.backups.timeoutSeconds
            try backups.rejectUnknown(["beforeApply", "beforeUpdate", "keyFile", "kept", "timeoutSeconds"])
        }
        if let longhorn = try top.section("longhorn") {
            if let snapshots = try longhorn.section("snapshots") {
                config.longhorn.snapshotsKept = try snapshots.int("keep", in: 1...100) ?? config.longhorn.snapshotsKept
                config.longhorn.snapshotReadySeconds = try snapshots.int("readyTimeoutSeconds", in: 5...86_400) ?? config.longhorn.snapshotReadySeconds
                try snapshots.rejectUnknown(["keep", "readyTimeoutSeconds"])
            }
            try longhorn.rejectUnknown(["snapshots"])
        }
        if let lease = try top.section("lease") {
            var terms = config.lease
            terms.durationSeconds = try lease.int("durationSeconds", in: 2...3600) ?? terms.durationSeconds
            terms.renewDeadlineSeconds = try lease.int("renewDeadlineSeconds", in: 1...3599) ?? terms.renewDeadlineSeconds
            terms.renewIntervalSeconds = try lease.int("renewIntervalSeconds", in: 1...3598) ?? terms.renewIntervalSeconds
            if let problem = terms.problems.first { throw ConfigError(file: file, line: nil, field: "lease", problem: problem) }
            config.lease = terms
            try lease.rejectUnknown(["durationSeconds", "renewDeadlineSeconds", "renewIntervalSeconds"])
        }
        if let join = try top.section("join") {
            config.join.listen = try join.string("listen") ?? config.join.listen
            config.join.advertise = try join.string("advertise")
            config.join.certificateDays = try join.int("certificateDays", in: 1...3650) ?? config.join.certificateDays
            try join.rejectUnknown(["listen", "advertise", "certificateDays"])
        }
        if let cluster = try top.string("cluster") {
            guard (1...63).contains(cluster.count), cluster.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                throw top.error("cluster", "must be 1 to 63 letters, digits, '-', '_' or '.'; is \"\(cluster)\"")
            }
            config.cluster = cluster
        }
        if let sinks = try top.sections("notifications", countMax: NotificationSink.countMax) {
            for (index, fields) in sinks.enumerated() {
                config.notifications.append(try NotificationSink.parse(fields, position: index + 1, path: resolve))
            }
            try NotificationSink.checkUnique(config.notifications)
        }
        if let validate = try top.section("validate") {
            config.applicationChecks = try Self.parseValidate(validate, resolve: resolve, prometheusConfigured: config.gates.prometheus != nil, url: url)
            config.validateAfterChange = try Self.afterChange(validate) ?? config.validateAfterChange
        }
        if let automation = try top.section("automation") {
            config.automation = try Self.automation(automation)
        }
        try top.rejectUnknown(["kubeconfig", "context", "pki", "agentPort", "stateDir", "releases", "policy", "backups", "maintenance", "join",
                               "cluster", "notifications", "automation", "lease", "gates", "validate", "longhorn"])
        return config
    }

    /// `automation:`: `checkInterval` (`1h`, `30m`, `1d`), `k3s` (none, patch, minor), and
    /// `channel` or `k3sVersion` (one of them); `longhorn` and `flux` (none, patch, minor), each
    /// with an optional ceiling `longhornVersion` / `fluxVersion`.
    static func automation(_ fields: ConfigFields) throws(ConfigError) -> AutomationPolicy {
        var policy = AutomationPolicy()
        if let text = try fields.string("checkInterval") {
            let range = AutomationPolicy.checkIntervalSecondsRange
            guard let milliseconds = try? History.ageMilliseconds(text), range.contains(Int(milliseconds / 1000)) else {
                throw fields.error("checkInterval", "must be a count and a unit (s, m, h, d) from 1m to 7d, e.g. 1h or 30m; is \"\(text)\"")
            }
            policy.checkIntervalSeconds = Int(milliseconds / 1000)
        }
        if let text = try fields.string("k3s") {
            guard let scope = AutomationPolicy.K3sScope(rawValue: text) else {
                throw fields.error("k3s", "must be none (check and tell only), patch (newer patches of the running minor) or minor "
                                   + "(also the next minor, one at a time); is \"\(text)\"")
            }
            policy.k3s = scope
        }
        let channel = try fields.string("channel")
        let pinned = try fields.string("k3sVersion")
        switch (channel, pinned) {
        case (.some, .some):
            throw fields.error("k3sVersion", "set either channel (follow a release channel) or k3sVersion (a pinned version), not both")
        case (let name?, nil):
            guard ChannelParser.isChannelName(name) else {
                throw fields.error("channel", "\"\(name)\" is not a channel name; write stable, latest or a minor such as v1.31")
            }
            policy.goal = .channel(name)
        case (nil, let text?):
            guard let version = try? K3sVersion(text), version.isRelease else {
                throw fields.error("k3sVersion", "must be a released k3s version such as v1.31.4+k3s1; is \"\(text)\"")
            }
            policy.goal = .pinned(version)
        case (nil, nil):
            break
        }
        policy.longhorn = try gitOps(.longhorn, fields)
        policy.flux = try gitOps(.flux, fields)
        try fields.rejectUnknown(["checkInterval", "k3s", "channel", "k3sVersion", "longhorn", "longhornVersion", "flux", "fluxVersion"])
        return policy
    }

    /// `automation.longhorn` / `automation.flux` and their `…Version` ceiling.
    static func gitOps(_ component: GitOpsComponent, _ fields: ConfigFields) throws(ConfigError) -> AutomationPolicy.GitOps {
        var policy = AutomationPolicy.GitOps()
        let name = component.rawValue
        if let text = try fields.string(name) {
            guard let scope = AutomationPolicy.Scope(rawValue: text) else {
                throw fields.error(name, "must be none (check and tell only), patch (newer patches of the installed minor) or minor "
                                   + "(also the next minor, one at a time), through the Git repository Flux watches; is \"\(text)\"")
            }
            policy.scope = scope
        }
        if let text = try fields.string("\(name)Version") {
            let example = component == .longhorn ? "v1.8.2" : "v2.5.1"
            guard let version = try? K3sVersion(text), !version.isPreRelease, version.build == nil else {
                throw fields.error("\(name)Version", "must be a released \(component.title) version such as \(example); is \"\(text)\"")
            }
            policy.pinned = version
        }
        return policy
    }

    /// `policy.autoRollback`: YAML's true and false as they always were, or `binaries` / `restore`.
    static func autoRollback(_ policy: ConfigFields) throws(ConfigError) -> AutoRollback? {
        guard let text = try policy.string("autoRollback") else { return nil }
        if let flag = YAML11Scalars.boolean(text) { return flag ? .binaries : .off }
        guard let value = AutoRollback(text: text) else {
            throw policy.error("autoRollback", "must be true (roll back by binaries where that is safe), false, or restore "
                               + "(also restore the hop's datastore snapshot on its own); is \"\(text)\"")
        }
        return value
    }

    /// The state directory to use: the file's, else the defaults of `StateDirectory`.
    public func resolvedStateDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        StateDirectory.resolve(explicit: stateDir, environment: environment)
    }
}

/// Where Upkeep keeps its database, caches and history.
public enum StateDirectory {
    /// `explicit`, else UPKEEP_STATE_DIR, /var/lib/upkeep as root, else the XDG state directory.
    public static func resolve(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit { return explicit }
        if let fromEnvironment = environment["UPKEEP_STATE_DIR"], !fromEnvironment.isEmpty { return fromEnvironment }
        if getuid() == 0 { return "/var/lib/upkeep" }
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") { return "\(xdg)/upkeep" }
        return "\(environment["HOME"] ?? NSHomeDirectory())/.local/state/upkeep"
    }
}
