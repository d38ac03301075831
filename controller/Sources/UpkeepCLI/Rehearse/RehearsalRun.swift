import ArgumentParser
import Foundation
import UpkeepCapture
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepPOSIX
import UpkeepRollout
import UpkeepStore

/// One rehearsal: capture the live cluster (GET and LIST only, as `upkeep-rehearse`), start its
/// twin with the sandbox program, run the plan `apply` would make there through the same code
/// (`Apply.applyPlanned`: planner, engine, runtime, the twin's real agents), with a state database
/// and a Lease of the twin's own, read what happened from that database, and bring the twin down
/// (unless `keep`). Nothing here writes to the live cluster or talks to a live agent.
struct RehearsalRun {
    struct Drill {
        /// Nodes whose new k3s fails, one rollout each; empty: every node the plan changes.
        var nodes: [String]
    }

    /// How long the live cluster's modelled steps take (docs/rehearse.md, "Step times"): the
    /// sandbox model's defaults unless the operator knows better.
    struct StepTimes: Encodable, Equatable {
        var rebuildSeconds = 10.0
        var podStartSeconds = 2.0
        var podTerminationSeconds = 1.0
    }

    let config: ControllerConfig
    let target: TargetOptions
    let speed: Double
    let steps: StepTimes
    let drill: Drill?
    let keep: String?

    /// The live side's requests carry this `User-Agent`, so an API audit can tell them apart.
    static let userAgent = "upkeep-rehearse"
    /// Bounds on the sandbox program: `up` waits at most its --ready-timeout (180 s) plus its
    /// process's start; `fault` up to 30 s for an agent; `down` up to 60 s for the process.
    static let twinUpSecondsMax = 300.0
    static let twinFaultSecondsMax = 60.0
    static let twinDownSecondsMax = 180.0
    /// The twin's drain and rebuild timeouts are the policy's divided by `speed`, never below this.
    static let twinTimeoutSecondsMin = 20
    /// Between drills: how long the twin may take to settle (every node Ready, every attached
    /// volume healthy), and how long a refused drill is asked again.
    static let drillSettleSecondsMax = 120.0
    static let drillRefusedRetrySecondsMax = 60.0

    /// Waits, at most `drillSettleSecondsMax`, until every node of the twin is Ready and every
    /// attached Longhorn volume healthy; returns either way (the drill's apply then says what is
    /// wrong).
    static func waitUntilSettled(_ twinConfig: ControllerConfig) async {
        let deadline = Date().addingTimeInterval(drillSettleSecondsMax)
        while Date() < deadline {
            if let reading = try? await ClusterSession.with(twinConfig, { try await $0.read() }),
               reading.nodes.allSatisfy({ $0.node.ready }),
               reading.volumes.allSatisfy({ $0.robustness == .healthy || $0.state != .attached }) {
                return
            }
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }
    /// The twin's transitions read for the longest steps (only the latest are read).
    static let transitionsMax = 100_000

    func run() async throws -> RehearsalReport {
        let capture = try await captureLive()
        let version = try await resolveTarget()
        let base = keep ?? NSTemporaryDirectory() + "upkeep-rehearse-\(UUID().uuidString.prefix(8).lowercased())"
        let twin = "\(base)/twin"
        do {
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            try Data(try capture.encoded()).write(to: URL(fileURLWithPath: "\(base)/capture.json"))
            chmod("\(base)/capture.json", 0o600)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot write the capture in \(base): \(error)")
        }
        do {
            _ = try await SandboxProgram.run(["up", "--dir", twin, "--twin", "\(base)/capture.json", "--speed", String(speed),
                                              "--offer-k3s", version.description, "--ready-timeout", "180",
                                              "--rebuild-seconds", String(steps.rebuildSeconds), "--pod-start-seconds", String(steps.podStartSeconds),
                                              "--pod-termination-seconds", String(steps.podTerminationSeconds)],
                                             timeoutSeconds: Self.twinUpSecondsMax)
            let report = try await rehearse(capture: capture, target: version, base: base, twin: twin)
            if keep == nil {
                _ = try? await SandboxProgram.run(["down", "--dir", twin], timeoutSeconds: Self.twinDownSecondsMax)
                try? FileManager.default.removeItem(atPath: base)
            }
            return report
        } catch {
            _ = try? await SandboxProgram.run(["down", "--dir", twin], timeoutSeconds: Self.twinDownSecondsMax)
            if keep == nil { try? FileManager.default.removeItem(atPath: base) }
            throw error
        }
    }

    /// The live cluster through upkeep.yaml's kubeconfig, read with GET and LIST only.
    func captureLive() async throws -> ClusterCapture {
        let client: KubeClient
        do {
            client = try KubeClient(endpoint: try Kubeconfig.load(path: config.kubeconfig).endpoint(context: config.context), userAgent: Self.userAgent)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "kubeconfig: \(error); set kubeconfig in \(config.source ?? "upkeep.yaml") or KUBECONFIG")
        }
        do {
            let capture = try await ClusterCapture.read(from: client, now: Date().timeIntervalSince1970)
            await client.shutdown()
            if let problem = capture.problem { throw CommandFailure(code: RolloutExitCode.refused, message: "cannot rehearse: \(problem)") }
            return capture
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            await client.shutdown()
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read the cluster at \(client.endpoint.server.url): \(error)")
        }
    }

    /// The configured gates, read now on the live side as the first wave's gate would read them:
    /// Prometheus's alerts and the blocking pods (GETs as `upkeep-rehearse`). Not the etcd gate:
    /// it asks the live agents, which a rehearsal never does. Nil without gates.
    func readLiveGates(firstWave: [String]) async -> (lines: [String], holds: [String])? {
        guard var policy = config.rollout.gates else { return nil }
        let skipped = policy.kinds.contains(.etcd) ? ["etcd: not read by a rehearsal (the live agents are not asked)"] : []
        policy.kinds = policy.kinds.filter { $0 != .etcd }
        guard !policy.kinds.isEmpty else { return (skipped, []) }
        do {
            let client = try KubeClient(endpoint: try Kubeconfig.load(path: config.kubeconfig).endpoint(context: config.context), userAgent: Self.userAgent)
            let fleet = AgentFleet(security: try ClusterSession.fleetSecurity(config))
            let prometheus = try config.gates.prometheus.map {
                try HTTPClient.oneShot(caFile: $0.caFile, timeoutSeconds: $0.timeoutSeconds, responseBytesMax: 16 << 20)
            }
            let report = await ClusterGateReader(settings: config.gates, kube: client, fleet: fleet, http: prometheus)
                .read(GateQuestion(kinds: policy.kinds, etcdNodes: []))
            await prometheus?.shutdown()
            await fleet.close()
            await client.shutdown()
            return (report.lines + skipped, report.holds(policy, going: firstWave).map(\.text))
        } catch {
            return (["gates not read: \(error)"] + skipped, [])
        }
    }

    /// `--to`, or the channel through the live release source (a read of the releases, never of the cluster).
    func resolveTarget() async throws -> K3sVersion {
        if let to = target.to {
            do { return try K3sVersion(to) } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "--to \(to): \(error); write a k3s version such as v1.31.4+k3s1")
            }
        }
        return try await ClusterSession.with(config) { try await $0.resolveTarget(to: nil, channel: target.channel) }
    }

    /// The twin's configuration: its API, agents' PKI, release server and state directory, with
    /// the operator's policy (its waits on modelled steps divided by `speed`), no maintenance
    /// windows (the report judges them), no notifications.
    func twinConfig(_ twin: String) throws -> ControllerConfig {
        var twinConfig: ControllerConfig
        do { twinConfig = try ControllerConfig.load(path: "\(twin)/upkeep.yaml") } catch {
            throw CommandFailure(code: 1, message: "the twin's \(twin)/upkeep.yaml cannot be read: \(error)")
        }
        var policy = config.rollout
        policy.maintenanceWindows = nil
        policy.gates = nil
        policy.drainTimeoutSeconds = max(Self.twinTimeoutSecondsMin, Int(Double(policy.drainTimeoutSeconds) / speed))
        policy.rebuildTimeoutSeconds = max(Self.twinTimeoutSecondsMin, Int(Double(policy.rebuildTimeoutSeconds) / speed))
        twinConfig.rollout = policy
        twinConfig.concurrency = config.concurrency
        twinConfig.nodeChoice = config.nodeChoice
        twinConfig.canaryAgents = config.canaryAgents
        twinConfig.canarySoakSeconds = Int((Double(config.canarySoakSeconds) / speed).rounded(.up))
        twinConfig.backups.beforeApply = config.backups.beforeApply
        twinConfig.validateAfterChange = config.validateAfterChange
        twinConfig.maintenance.suspendFlux = config.maintenance.suspendFlux
        twinConfig.notifications = []
        return twinConfig
    }

    private func rehearse(capture: ClusterCapture, target version: K3sVersion, base: String, twin: String) async throws -> RehearsalReport {
        let twinConfig = try twinConfig(twin)
        let store = try openStateStore(twinConfig)
        var report = RehearsalReport(capture: capture, target: version, speed: speed, steps: steps, kept: keep.map { _ in base })
        if let drill {
            let first = try await applyOnTwin(twinConfig, store: store, target: version, log: "\(base)/apply-plan.log", dryRun: true)
            report.take(plan: first.plan, capture: capture, policy: config.rollout)
            let nodes = drill.nodes.isEmpty ? (first.plan?.waves.flatMap(\.nodes) ?? []) : drill.nodes
            for node in nodes {
                // Each drill starts from a settled twin: after the last rollback a node's agent
                // reconnects and its replicas rebuild, and apply refuses a cluster in that state.
                await Self.waitUntilSettled(twinConfig)
                let before = try storeCall { try store.history(limit: 1).first?.id }
                _ = try await SandboxProgram.run(["fault", "--dir", twin, node, "unhealthy", "--k3s-version", version.description],
                                                 timeoutSeconds: Self.twinFaultSecondsMax)
                let first = Date()
                var started = first
                var ran = try await applyOnTwin(twinConfig, store: store, target: version, log: "\(base)/drill-\(node).log", dryRun: false)
                // A refusal (nothing changed) is asked again while the twin may still be settling, within a bound.
                while ran.code == RolloutExitCode.refused, Date().timeIntervalSince(first) < Self.drillRefusedRetrySecondsMax {
                    try await Task.sleep(nanoseconds: 2_000_000_000)
                    started = Date()
                    ran = try await applyOnTwin(twinConfig, store: store, target: version, log: "\(base)/drill-\(node).log", dryRun: false)
                }
                let seconds = Date().timeIntervalSince(started)
                _ = try await SandboxProgram.run(["fault", "--dir", twin, node, "clear"], timeoutSeconds: Self.twinFaultSecondsMax)
                // Only a rollout this drill recorded describes it; a refusal recorded none.
                let record = try storeCall { try store.history(limit: 1).first }.flatMap { $0.id == before ? nil : $0 }
                let nodesAfter = try await ClusterSession.with(twinConfig) { try await $0.read() }.nodes.map(\.node)
                report.drills.append(RehearsalReport.DrillRun(failing: node, exitCode: ran.code, seconds: seconds, record: record,
                                                              message: ran.message, nodesAfter: nodesAfter))
            }
            report.finishDrill()
        } else {
            let started = Date()
            let ran = try await applyOnTwin(twinConfig, store: store, target: version, log: "\(base)/apply.log", dryRun: false)
            report.take(plan: ran.plan, capture: capture, policy: config.rollout)
            let record = ran.plan?.waves.isEmpty == false ? try storeCall({ try store.history(limit: 1).first }) : nil
            let transitions = try record.map { record in try storeCall { try store.transitions(rolloutID: record.id, limit: Self.transitionsMax) } } ?? []
            report.take(run: ran.code, message: ran.message, record: record, transitions: transitions,
                        wallSeconds: Date().timeIntervalSince(started), windows: config.rollout.maintenanceWindows, now: .wallClockNow())
            if let gates = await readLiveGates(firstWave: ran.plan?.waves.first?.nodes ?? []) {
                report.gates = gates.lines
                report.gateHolds = gates.holds
            }
        }
        return report
    }

    /// `apply --yes --ignore-window` (or `--dry-run`) on the twin, its output in `log`; the exit
    /// code it ended with, the failure's message, and the plan it made.
    private func applyOnTwin(_ twinConfig: ControllerConfig, store: StateStore, target version: K3sVersion, log: String,
                             dryRun: Bool) async throws -> (code: Int32, message: String?, plan: Plan?) {
        var plan: Plan?
        var change = try ChangeOptions.parse(["--yes", "--ignore-window"] + (dryRun ? ["--dry-run"] : []))
        change.skipBackup = !config.backups.beforeApply
        let redirect = try OutputRedirect(to: log)
        defer { redirect.restore() }
        do {
            let code = try await ClusterSession.with(twinConfig) { session in
                try await Apply.applyPlanned(session: session, store: store, change: change, target: version) {
                    let planned = try await session.plan(target, target: version)
                    plan = planned.plan
                    return planned
                }
            }
            return (code, nil, plan)
        } catch let failure as CommandFailure {
            print("Error: \(failure.message)")
            return (failure.code, failure.message, plan)
        }
    }
}

/// Sends this process's stdout to a file until `restore()`: what `apply` prints on the twin goes
/// to the rehearsal's log, not into its report.
struct OutputRedirect {
    private let saved: Int32

    init(to path: String) throws {
        fflush(nil)
        let file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard file >= 0 else { throw CommandFailure(code: RolloutExitCode.usage, message: "cannot write \(path): \(String(cString: strerror(errno)))") }
        saved = dup(STDOUT_FILENO)
        dup2(file, STDOUT_FILENO)
        close(file)
    }

    func restore() {
        fflush(nil)
        dup2(saved, STDOUT_FILENO)
        close(saved)
    }
}
