import Foundation
import Testing
import UpkeepCLI
import UpkeepCore
import UpkeepFleet
import UpkeepRollout
import UpkeepTestSupport
import UpkeepYAML

/// `upkeep.yaml`: strict reading, relative paths, the search order, and errors that name the
/// file, line and field.
@Suite struct ControllerConfigTests {
    static let sandboxShaped = """
        kubeconfig: kubeconfig
        pki: {ca: pki/ca.crt, certificate: pki/controllers/upkeep.crt, key: /abs/upkeep.key}
        agentPort: 9443
        stateDir: state
        releases: {githubAPI: "http://127.0.0.1:8123/", channelServer: "http://127.0.0.1:8123/v1-release/channels", mirror: null, insecure: true}
        policy: {concurrency: 2, drainTimeoutSeconds: 120, restoreDrainTimeoutSeconds: 20, healthTimeoutSeconds: 60, rebuildTimeoutSeconds: 120, autoRollback: false}
        """

    @Test func aSandboxConfigReadsWithPathsAgainstItsDirectory() throws {
        let config = try ControllerConfig.parse(Self.sandboxShaped, file: "/srv/sandbox/upkeep.yaml")
        #expect(config.kubeconfig == "/srv/sandbox/kubeconfig")
        #expect(config.pki.ca == "/srv/sandbox/pki/ca.crt")
        #expect(config.pki.key == "/abs/upkeep.key")
        #expect(config.agentPort == 9443)
        #expect(config.resolvedStateDirectory() == "/srv/sandbox/state")
        #expect(config.releases.githubAPI == "http://127.0.0.1:8123")
        #expect(config.releases.channelServer == "http://127.0.0.1:8123")
        #expect(config.releases.mirror == nil)
        #expect(config.concurrency == 2)
        #expect(config.rollout.drainTimeoutSeconds == 120 && config.rollout.rebuildTimeoutSeconds == 120)
        #expect(config.rollout.restoreDrainTimeoutSeconds == 20)
        #expect(config.rollout.autoRollback == false)
        #expect(config.rollout.problems().isEmpty, "short verify/rebuild bounds keep a consistent watchdog")
    }

    @Test func autoRollbackKeepsTrueAndFalseAndTakesRestore() throws {
        let cases: [(String, AutoRollback)] = [("true", .binaries), ("false", .off), ("yes", .binaries), ("binaries", .binaries),
                                               ("restore", .restore)]
        for (text, expected) in cases {
            let config = try ControllerConfig.parse("policy:\n  autoRollback: \(text)\n", file: "/srv/upkeep.yaml")
            #expect(config.rollout.autoRollback == expected, "autoRollback: \(text)")
        }
        #expect(try ControllerConfig.parse("agentPort: 9443\n", file: "/srv/upkeep.yaml").rollout.autoRollback == .binaries)
    }

    @Test func backupsDefaultToBeforeEveryRolloutAndReadTheirSection() throws {
        let defaults = try ControllerConfig.parse("agentPort: 9443\n", file: "/srv/upkeep.yaml")
        #expect(defaults.backups == ControllerConfig.Backups())
        #expect(defaults.backups.beforeApply && defaults.backups.beforeUpdate && defaults.backups.keyFile == nil && defaults.backups.kept == 10)
        let config = try ControllerConfig.parse("backups:\n  beforeApply: false\n  beforeUpdate: false\n  keyFile: keys/backup.key\n  kept: 3\n  timeoutSeconds: 60\n",
                                                file: "/srv/upkeep.yaml")
        #expect(!config.backups.beforeApply && !config.backups.beforeUpdate && config.backups.keyFile == "/srv/keys/backup.key")
        #expect(config.backups.kept == 3 && config.backups.timeoutSeconds == 60)
    }

    @Test func longhornSnapshotsKeepThreeUpdatesByDefaultAndReadTheirSection() throws {
        let defaults = try ControllerConfig.parse("agentPort: 9443\n", file: "/srv/upkeep.yaml")
        #expect(defaults.longhorn.snapshotsKept == 3 && defaults.longhorn.snapshotReadySeconds == 300)
        let config = try ControllerConfig.parse("longhorn:\n  snapshots:\n    keep: 5\n    readyTimeoutSeconds: 30\n", file: "/srv/upkeep.yaml")
        #expect(config.longhorn.snapshotsKept == 5 && config.longhorn.snapshotReadySeconds == 30)
    }

    @Test func maintenanceWindowsGoIntoTheRolloutPolicy() throws {
        let config = try ControllerConfig.parse("maintenance:\n  windows: [\"Sat 02:00-06:00\", \"Mon-Fri 22:00-02:00\"]\n", file: "/u.yaml")
        #expect(config.rollout.maintenanceWindows?.map(\.description) == ["Sat 02:00-06:00 UTC", "Mon-Fri 22:00-02:00 UTC"])
        #expect(try ControllerConfig.parse("agentPort: 1\n", file: "/u.yaml").rollout.maintenanceWindows == nil)
        // A zone is read from the system's tzdata.
        let zoned = try ControllerConfig.parse("maintenance:\n  windows: [\"Sat 02:00-06:00 Europe/Berlin\", \"daily 00:00-24:00\"]\n", file: "/u.yaml")
        #expect(zoned.rollout.maintenanceWindows?.map(\.description) == ["Sat 02:00-06:00 Europe/Berlin", "daily 00:00-24:00 UTC"])
        #expect(zoned.rollout.maintenanceWindows?.first?.zone.name == "Europe/Berlin")
    }

    /// The zone database is a directory of TZif files (`$TZDIR`, else /usr/share/zoneinfo): a
    /// name that is not there, that would leave it, or whose file is damaged, is a config error
    /// that names the directory or the file.
    @Test func zonesComeFromTheZoneDirectoryAndItsErrorsNameIt() throws {
        let directory = try TemporaryDirectory()
        let berlin = try #require(FileManager.default.contents(atPath: "/usr/share/zoneinfo/Europe/Berlin"), "install tzdata")
        try FileManager.default.createDirectory(atPath: directory.file("Europe"), withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: directory.file("Europe/Berlin"), contents: berlin))
        #expect(FileManager.default.createFile(atPath: directory.file("Europe/Broken"), contents: berlin.prefix(100)))
        let zones = ZoneInfoDirectory(path: directory.path, since: .seconds(1_798_761_600))
        func problem(_ window: String) -> String {
            do {
                _ = try ControllerConfig.parse("maintenance:\n  windows: [\"\(window)\"]\n", file: "/u.yaml", zones: zones)
                return "accepted"
            } catch {
                #expect(error.field == "maintenance.windows")
                return error.problem
            }
        }
        #expect(try ControllerConfig.parse("maintenance:\n  windows: [\"Sat 02:00-06:00 Europe/Berlin\"]\n", file: "/u.yaml", zones: zones)
            .rollout.maintenanceWindows?.first?.zone.name == "Europe/Berlin")
        #expect(problem("Sat 02:00-06:00 Europe/Paris").contains("no time zone \"Europe/Paris\" in \(directory.path) (the system's tzdata)"))
        #expect(problem("Sat 02:00-06:00 Europe").contains("no time zone \"Europe\" in \(directory.path)"), "a directory is no zone")
        #expect(problem("Sat 02:00-06:00 Europe/Broken").contains("\(directory.path)/Europe/Broken is not a readable TZif file"))
        for name in ["../Europe/Berlin", "Europe/../Europe/Berlin", "/etc/localtime", "Europe//Berlin", "Europe/Ber*lin"] {
            #expect(problem("Sat 02:00-06:00 \(name)").contains("is not a time zone name"), "\(name)")
        }
        #expect(ZoneInfoDirectory.system(environment: ["TZDIR": directory.path]).path == directory.path)
        #expect(ZoneInfoDirectory.system(environment: [:]).path == "/usr/share/zoneinfo")
    }

    @Test func theClusterLeaseTermsDefaultAndReadTheirSection() throws {
        let defaults = try ControllerConfig.parse("agentPort: 1\n", file: "/u.yaml").lease
        #expect(defaults.durationSeconds == 60 && defaults.renewDeadlineSeconds == 40 && defaults.renewIntervalSeconds == 5)
        let short = try ControllerConfig.parse("lease: {durationSeconds: 6, renewDeadlineSeconds: 4, renewIntervalSeconds: 1}\n", file: "/u.yaml").lease
        #expect(short.durationSeconds == 6 && short.renewDeadlineSeconds == 4 && short.renewIntervalSeconds == 1)
    }

    @Test func gatesDefaultToEtcdAndReadTheirSection() throws {
        let defaults = try ControllerConfig.parse("agentPort: 9443\n", file: "/srv/upkeep.yaml")
        #expect(defaults.rollout.gates == GatePolicy(kinds: [.etcd], holdTimeoutSeconds: 3600))
        #expect(defaults.gates.prometheus == nil && defaults.gates.etcd)
        let config = try ControllerConfig.parse("""
            gates:
              holdTimeout: 20m
              prometheus:
                url: http://prometheus.monitoring:9090/
                include: "^(KubeNodeNotReady|etcd.*)$"
                exclude: Watchdog
                timeout: 5s
                whenUnreachable: pass
                caFile: ca/prom.pem
              blockingPods:
                anywhere: ["app=db-migration"]
                onNode: ["upkeep.io/hold-drain=true", "app in (backup)"]
              etcd: false
            """, file: "/srv/upkeep.yaml")
        #expect(config.gates.prometheus == GateSettings.Prometheus(url: "http://prometheus.monitoring:9090", include: "^(KubeNodeNotReady|etcd.*)$",
                                                                   exclude: "Watchdog", timeoutSeconds: 5, caFile: "/srv/ca/prom.pem"))
        #expect(config.gates.podsAnywhere == ["app=db-migration"] && config.gates.podsOnNode.count == 2 && !config.gates.etcd)
        #expect(config.rollout.gates == GatePolicy(kinds: [.prometheus, .blockingPods], holdTimeoutSeconds: 1200, passWhenPrometheusUnreachable: true))
    }

    @Test func drainOptionsSelectionAndCanaryReadFromPolicy() throws {
        let defaults = try ControllerConfig.parse("agentPort: 9443\n", file: "/srv/upkeep.yaml")
        #expect(defaults.rollout.drain == DrainPolicy() && defaults.rollout.drain?.deleteEmptyDirData == false, "kubectl's default")
        #expect(defaults.nodeChoice.isEverything && defaults.canaryAgents == 0 && defaults.canarySoakSeconds == 600)
        let config = try ControllerConfig.parse("""
            policy:
              nodes: [server-1, agent-1, agent-2]
              exclude: [agent-2]
              selector: "pool in (blue)"
              canary: 1
              canarySoak: 15m
              drain:
                timeout: 10m
                gracePeriod: 30
                podSelector: "app!=cache"
                deleteEmptyDirData: true
                skipWaitForDeleteTimeout: 1m
                disableEviction: true
            """, file: "/srv/upkeep.yaml")
        #expect(config.rollout.drainTimeoutSeconds == 600)
        #expect(config.rollout.drain == DrainPolicy(gracePeriodSeconds: 30, podSelector: "app!=cache", deleteEmptyDirData: true,
                                                    skipWaitForDeleteTimeoutSeconds: 60, disableEviction: true))
        #expect(config.nodeChoice == NodeChoice(nodes: ["server-1", "agent-1", "agent-2"], exclude: ["agent-2"], selector: "pool in (blue)"))
        #expect(config.canaryAgents == 1 && config.canarySoakSeconds == 900)
        // Resolved against the nodes and their labels: agent-2 excluded, agent-1 not blue.
        let nodes: [(name: String, labels: [String: String])] = [("server-1", ["pool": "blue"]), ("agent-1", ["pool": "green"]),
                                                                ("agent-2", ["pool": "blue"]), ("agent-3", ["pool": "blue"])]
        let selection = try config.nodeChoice.resolve(nodes)
        #expect(selection == NodeSelection(nodes: ["server-1"], how: "--nodes server-1,agent-1,agent-2 --exclude agent-2 --selector pool in (blue)"))
        // An excluded name the cluster does not have reaches the planner, which refuses it by name.
        #expect(try NodeChoice(exclude: ["agent-9"]).resolve(nodes)?.nodes == ["server-1", "agent-1", "agent-2", "agent-3", "agent-9"])
        #expect(try NodeChoice().resolve(nodes) == nil)
    }

    /// `validate.afterChange`: the versions by default, `[]` none, `[all]` every group, a list in
    /// the order validate runs them.
    @Test func theChecksAfterAChangeAreConfigured() throws {
        #expect(try ControllerConfig.parse(Self.sandboxShaped, file: "/s/upkeep.yaml").validateAfterChange == [.versions])
        let cases: [(String, [ValidationArea])] = [("[]", []), ("[all]", ValidationArea.allCases),
                                                   ("[versions, storage, cluster, storage]", [.cluster, .storage, .versions])]
        for (text, areas) in cases {
            let config = try ControllerConfig.parse(Self.sandboxShaped + "\nvalidate:\n  afterChange: \(text)\n", file: "/s/upkeep.yaml")
            #expect(config.validateAfterChange == areas, "\(text)")
        }
    }

    @Test func anEmptyDocumentIsAnError() {
        #expect(throws: ConfigError.self) { try ControllerConfig.parse("", file: "/x/upkeep.yaml") }
    }

    @Test(arguments: [
        ("agentPort: 70000\n", "agentPort", "must be in 1...65535"),
        ("agentPort: nine\n", "agentPort", "whole number"),
        ("policy:\n  concurrency: 0\n", "policy.concurrency", "must be in 1"),
        ("policy:\n  autoRollback: maybe\n", "policy.autoRollback", "must be true (roll back by binaries where that is safe), false, or restore"),
        ("policy:\n  drainTimeout: 5\n", "policy.drainTimeout", "not a known field"),
        ("releases:\n  githubAPI: ftp://x\n", "releases.githubAPI", "http:// or https://"),
        // Plain HTTP needs the operator's word for it (issue 19), and the error says how to give it.
        ("releases:\n  githubAPI: http://releases.example\n", "releases.githubAPI", "set releases.insecure: true"),
        ("releases:\n  mirror: http://mirror.example/k3s\n  insecure: false\n", "releases.mirror", "use https://"),
        ("pki: yes\n", "pki", "mapping"),
        ("kubeconfig: \"\"\n", "kubeconfig", "must not be empty"),
        ("policy:\n  verifyTimeoutSeconds: 100\n  rebuildTimeoutSeconds: 100\n  watchdogTimeoutSeconds: 150\n", "policy", "watchdogTimeoutSeconds"),
        ("stateDirectory: /x\n", "stateDirectory", "known here: agentPort"),
        ("backups:\n  kept: 0\n", "backups.kept", "must be in 1"),
        ("backups:\n  key: /k\n", "backups.key", "not a known field"),
        ("longhorn:\n  snapshots:\n    keep: 0\n", "longhorn.snapshots.keep", "must be in 1"),
        ("longhorn:\n  snapshot: {keep: 2}\n", "longhorn.snapshot", "not a known field"),
        ("maintenance:\n  windows: Sat 02:00-06:00\n", "maintenance.windows", "must be a list"),
        ("validate:\n  afterChange: [cluster, dns]\n", "validate.afterChange", "\"dns\" is not a group of checks: give any of cluster, flux"),
        ("validate:\n  afterChange: all\n", "validate.afterChange", "must be a list"),
        ("maintenance:\n  windows: [\"Sat 2-6\"]\n", "maintenance.windows", "is not a time HH:MM"),
        ("maintenance:\n  windows: [\"Sat 02:00-06:00 Europe/Atlantis\"]\n", "maintenance.windows",
         "no time zone \"Europe/Atlantis\" in /usr/share/zoneinfo (the system's tzdata)"),
        ("maintenance:\n  windows: [\"Sat 02:00-06:00 ../../etc/passwd\"]\n", "maintenance.windows", "is not a time zone name"),
        ("automation:\n  k3s: major\n", "automation.k3s", "must be none (check and tell only), patch"),
        ("automation:\n  k3s: minor\n  channel: stable\n  k3sVersion: v1.31.4+k3s1\n", "automation.k3sVersion", "not both"),
        ("automation:\n  k3sVersion: v1.32.0-rc1+k3s1\n", "automation.k3sVersion", "released k3s version"),
        ("automation:\n  k3sVersion: latest\n", "automation.k3sVersion", "released k3s version"),
        ("automation:\n  checkInterval: 10s\n", "automation.checkInterval", "from 1m to 7d"),
        ("automation:\n  checkInterval: hourly\n", "automation.checkInterval", "e.g. 1h or 30m"),
        ("automation:\n  flux: major\n", "automation.flux", "must be none (check and tell only), patch"),
        ("automation:\n  longhorn: yes\n", "automation.longhorn", "through the Git repository Flux watches"),
        ("automation:\n  longhornVersion: v1.9.0-rc1\n", "automation.longhornVersion", "released Longhorn version such as v1.8.2"),
        ("automation:\n  fluxVersion: newest\n", "automation.fluxVersion", "released Flux version such as v2.5.1"),
        ("automation:\n  helm: minor\n", "automation.helm", "not a known field"),
        ("lease:\n  durationSeconds: 1\n", "lease.durationSeconds", "must be in 2"),
        ("lease:\n  durationSeconds: 30\n  renewDeadlineSeconds: 30\n", "lease", "must be less than durationSeconds"),
        ("lease:\n  renewIntervalSeconds: 40\n", "lease", "must be less than renewDeadlineSeconds"),
        ("lease:\n  name: mine\n", "lease.name", "not a known field"),
        ("gates:\n  prometheus: {include: Kube}\n", "gates.prometheus.url", "is required"),
        ("gates:\n  prometheus: {url: \"ftp://p\"}\n", "gates.prometheus.url", "http:// or https://"),
        ("gates:\n  prometheus: {url: \"http://p:9090\", exclude: \"(\"}\n", "gates.prometheus.exclude", "is not a regular expression"),
        ("gates:\n  prometheus: {url: \"http://p:9090\", whenUnreachable: ignore}\n", "gates.prometheus.whenUnreachable", "hold"),
        ("gates:\n  holdTimeout: forever\n", "gates.holdTimeout", "must be a duration"),
        ("gates:\n  holdTimeout: 3s\n", "gates.holdTimeout", "must be 10s...7d"),
        ("gates:\n  blockingPods: {anywhere: [\"app in (a\"]}\n", "gates.blockingPods.anywhere", "is not a label selector"),
        ("gates:\n  etcd: maybe\n", "gates.etcd", "true or false"),
        ("policy:\n  drainTimeoutSeconds: 60\n  drain: {timeout: 2m}\n", "policy.drain.timeout", "keep one"),
        ("policy:\n  drain: {gracePeriod: 2d}\n", "policy.drain.gracePeriod", "must be 0s...1d"),
        ("policy:\n  drain: {evict: false}\n", "policy.drain.evict", "not a known field"),
        ("policy:\n  selector: \"=x\"\n", "policy.selector", "is not a label selector"),
        ("policy:\n  canary: 101\n", "policy.canary", "must be in 0...100"),
    ])
    func badFieldsAreNamed(yaml: String, field: String, problem: String) {
        do {
            _ = try ControllerConfig.parse(yaml, file: "/etc/upkeep/upkeep.yaml")
            Issue.record("accepted \(yaml)")
        } catch {
            #expect(error.field == field, "\(error)")
            #expect(error.problem.contains(problem), "\(error)")
            #expect(error.description.hasPrefix("/etc/upkeep/upkeep.yaml"), "\(error)")
        }
    }

    @Test func anUnknownFieldCarriesItsLine() {
        do {
            _ = try ControllerConfig.parse("agentPort: 9443\n\nsurprise: 1\n", file: "/c.yaml")
            Issue.record("accepted")
        } catch {
            #expect(error.line == 3, "\(error)")
        }
    }

    @Test func theSearchOrderIsFlagThenEnvironmentThenFiles() throws {
        let directory = try TemporaryDirectory()
        let working = directory.file("work")
        let home = directory.file("home")
        try FileManager.default.createDirectory(atPath: "\(home)/.config/upkeep", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: working, withIntermediateDirectories: true)
        let environment = ["HOME": home]

        // Nothing anywhere: the defaults, and no source.
        let none = try ControllerConfig.locate(explicit: nil, environment: environment, workingDirectory: working)
        #expect(none.source == nil && none.agentPort == 9660)

        try "agentPort: 2001\n".write(toFile: "\(home)/.config/upkeep/upkeep.yaml", atomically: true, encoding: .utf8)
        #expect(try ControllerConfig.locate(explicit: nil, environment: environment, workingDirectory: working).agentPort == 2001)

        try "agentPort: 2002\n".write(toFile: "\(working)/upkeep.yaml", atomically: true, encoding: .utf8)
        #expect(try ControllerConfig.locate(explicit: nil, environment: environment, workingDirectory: working).agentPort == 2002)

        let named = try directory.write("agentPort: 2003\n", to: "named.yaml")
        var withVariable = environment
        withVariable["UPKEEP_CONFIG"] = named
        #expect(try ControllerConfig.locate(explicit: nil, environment: withVariable, workingDirectory: working).agentPort == 2003)

        let flagged = try directory.write("agentPort: 2004\n", to: "flagged.yaml")
        #expect(try ControllerConfig.locate(explicit: flagged, environment: withVariable, workingDirectory: working).agentPort == 2004)

        // A file named explicitly must exist; the error says how to get one.
        do {
            _ = try ControllerConfig.locate(explicit: directory.file("missing.yaml"), environment: environment, workingDirectory: working)
            Issue.record("a missing --config file was accepted")
        } catch {
            #expect(error.problem.contains("does not exist"), "\(error)")
        }
    }
}
