/// The verdicts of `upkeep validate` (docs/validate.md). Pure: observations in, one
/// `ValidationResult` per check out, in a fixed order; nothing here reads the cluster or the clock.
public enum ValidationVerdicts {
    /// Evidence lines per check at most; the rest are counted in one more line.
    public static let evidenceMax = 20

    static func bounded(_ lines: [String]) -> [String] {
        lines.count <= evidenceMax ? lines : Array(lines.prefix(evidenceMax)) + ["… and \(lines.count - evidenceMax) more"]
    }

    // MARK: - cluster

    /// `cluster/ready`, `cluster/version`, `cluster/cordons`, `cluster/etcd`.
    public static func cluster(_ observed: ClusterValidationObservations) -> [ValidationResult] {
        let area = ValidationArea.cluster
        let nodes: [ClusterValidationObservations.Node]
        switch observed.nodes {
        case .unreadable(let why):
            let action = "check that the Kubernetes API answers (`kubectl get nodes`) and the kubeconfig in upkeep.yaml"
            return ["ready", "version", "cordons"].map {
                ValidationResult(area: area, check: $0, verdict: .unknown, summary: "cannot read the nodes: \(why)", action: action)
            } + [etcd(observed.etcd)]
        case .read(let list):
            nodes = list
        }
        return [ready(nodes), version(nodes, rollout: observed.rollout), cordons(nodes, rollout: observed.rollout), etcd(observed.etcd)]
    }

    static func ready(_ nodes: [ClusterValidationObservations.Node]) -> ValidationResult {
        guard !nodes.isEmpty else {
            return ValidationResult(area: .cluster, check: "ready", verdict: .unhealthy, summary: "the cluster has no nodes",
                                    action: "check that upkeep.yaml's kubeconfig points at the right cluster")
        }
        let notReady = nodes.filter { !$0.ready }
        let evidence = nodes.map { "\($0.name) (\($0.server ? "server" : "agent")): \($0.ready ? "Ready" : "NotReady")" }
        guard notReady.isEmpty else {
            return ValidationResult(area: .cluster, check: "ready", verdict: .unhealthy,
                                    summary: "\(notReady.count) of \(nodes.count) nodes not Ready: \(listed(notReady.map(\.name)))", evidence: evidence,
                                    action: "look at each node's k3s (`journalctl -u k3s` on a server, `-u k3s-agent` on an agent) "
                                        + "and `kubectl describe node NODE`; `upkeep agents` says whether its agent answers")
        }
        return ValidationResult(area: .cluster, check: "ready", verdict: .healthy, summary: "\(nodes.count) of \(nodes.count) nodes Ready", evidence: evidence)
    }

    static func version(_ nodes: [ClusterValidationObservations.Node], rollout: ClusterValidationObservations.Rollout?) -> ValidationResult {
        var byVersion: [String: [String]] = [:]
        for node in nodes { byVersion[node.version, default: []].append(node.name) }
        let versions = byVersion.keys.sorted()
        let evidence = versions.map { "\($0): \(listed(byVersion[$0] ?? []))" }
        var unfinished: [String] = []
        if let rollout {
            unfinished.append("rollout \(rollout.id) to \(rollout.target) is unfinished (\(rollout.status))")
        }
        guard versions.count > 1 else {
            let summary = versions.first.map { "every node runs \($0)" } ?? "no nodes"
            return ValidationResult(area: .cluster, check: "version", verdict: .healthy, summary: summary, evidence: evidence + unfinished)
        }
        if let rollout {
            return ValidationResult(area: .cluster, check: "version", verdict: .unhealthy,
                                    summary: "nodes run \(versions.count) versions; rollout \(rollout.id) to \(rollout.target) is unfinished (\(rollout.status))",
                                    evidence: evidence,
                                    action: "`upkeep status` shows where it stopped; carry it on with `upkeep resume`, or go back with `upkeep rollback`")
        }
        return ValidationResult(area: .cluster, check: "version", verdict: .unhealthy,
                                summary: "nodes run \(versions.count) versions and no rollout of this controller is unfinished",
                                evidence: evidence,
                                action: "bring every node to one version: `upkeep plan --to VERSION`, then `upkeep apply --to VERSION`")
    }

    static func cordons(_ nodes: [ClusterValidationObservations.Node], rollout: ClusterValidationObservations.Rollout?) -> ValidationResult {
        let expected = Set(rollout?.cordoned ?? [])
        let cordoned = nodes.filter(\.cordoned)
        let unexpected = cordoned.filter { !expected.contains($0.name) }
        let evidence = cordoned.map { node in
            expected.contains(node.name) ? "\(node.name): cordoned by rollout \(rollout?.id ?? "?") (\(rollout?.status ?? "?"))"
                : "\(node.name): cordoned (spec.unschedulable), not by an unfinished rollout of this controller"
        }
        guard unexpected.isEmpty else {
            let names = unexpected.map(\.name)
            return ValidationResult(area: .cluster, check: "cordons", verdict: .unhealthy,
                                    summary: "cordoned, not by Upkeep: \(listed(names))", evidence: evidence,
                                    action: "if nobody is working on \(names.count == 1 ? "it" : "them"), uncordon: "
                                        + names.prefix(5).map { "`kubectl uncordon \($0)`" }.joined(separator: ", "))
        }
        let summary = cordoned.isEmpty ? "no node cordoned" : "cordoned only by rollout \(rollout?.id ?? "?"): \(listed(cordoned.map(\.name)))"
        return ValidationResult(area: .cluster, check: "cordons", verdict: .healthy, summary: summary, evidence: evidence)
    }

    /// The etcd gate's own judgement (`GateVerdict`), with nothing spared.
    static func etcd(_ reading: EtcdReading) -> ValidationResult {
        let report = GateReport(etcd: reading)
        let evidence: [String]
        switch reading {
        case .members(let members, _):
            evidence = members.map { member in
                (member.node.map { "\(member.name) (\($0))" } ?? member.name) + (member.healthy ? ": healthy" : ": not healthy")
                    + (member.message.map { ": \($0)" } ?? "")
            }
        case .unknown, .noEmbeddedEtcd:
            evidence = []
        }
        let summary = report.lines.first.map { String($0.dropFirst("etcd: ".count)) } ?? "not read"
        switch reading {
        case .noEmbeddedEtcd:
            return ValidationResult(area: .cluster, check: "etcd", verdict: .healthy,
                                    summary: "no embedded etcd (one server on SQLite, or an external datastore): no members to ask")
        case .unknown:
            return ValidationResult(area: .cluster, check: "etcd", verdict: .unknown, summary: summary,
                                    action: "no server agent could say; `upkeep agents` shows which answer, and each server's "
                                        + "agent.yaml must name its etcd endpoint (docs/agent.md)")
        case .members:
            let holds = GateVerdict.holds(report, policy: GatePolicy(kinds: [.etcd]), going: [], retried: [])
            guard let hold = holds.first else {
                return ValidationResult(area: .cluster, check: "etcd", verdict: .healthy, summary: summary, evidence: evidence)
            }
            return ValidationResult(area: .cluster, check: "etcd", verdict: .unhealthy, summary: hold.reason, evidence: evidence,
                                    action: "look at the member's server: `journalctl -u k3s` there and `etcdctl endpoint health`; "
                                        + "without quorum the API takes no writes (https://docs.k3s.io/datastore/ha-embedded)")
        }
    }

    // MARK: - flux

    static let fluxInstalled = "is Flux installed? `kubectl get crd gitrepositories.source.toolkit.fluxcd.io`; or leave out --flux"

    /// `flux/controllers`, `flux/ready`, `flux/suspended`.
    public static func flux(_ observed: FluxValidationObservations) -> [ValidationResult] {
        [fluxControllers(observed.controllers), fluxReady(observed), fluxSuspended(observed)]
    }

    static func fluxControllers(_ reading: ValidationReading<[FluxValidationObservations.Controller]>) -> ValidationResult {
        guard case .read(let controllers) = reading else {
            return cannotRead(.flux, "controllers", "the Flux controllers", reading, action: "`kubectl -n flux-system get deployments`")
        }
        guard !controllers.isEmpty else {
            return ValidationResult(area: .flux, check: "controllers", verdict: .unhealthy,
                                    summary: "no Flux controller Deployment in flux-system (label app.kubernetes.io/part-of=flux)",
                                    action: "install Flux (https://fluxcd.io/flux/installation/), or leave out --flux")
        }
        let evidence = controllers.map { "\($0.name): \($0.available)/\($0.replicas) available" }
        let down = controllers.filter { $0.replicas < 1 || $0.available < $0.replicas || !$0.availableCondition }
        guard down.isEmpty else {
            return ValidationResult(area: .flux, check: "controllers", verdict: .unhealthy,
                                    summary: "not available: \(listed(down.map { $0.replicas < 1 ? "\($0.name) (scaled to 0)" : $0.name }))", evidence: evidence,
                                    action: "`kubectl -n flux-system describe deployment NAME` and its pods' logs; `flux check` "
                                        + "(https://fluxcd.io/flux/cmd/flux_check/)")
        }
        return ValidationResult(area: .flux, check: "controllers", verdict: .healthy, summary: "\(controllers.count) controllers available", evidence: evidence)
    }

    static func fluxReady(_ observed: FluxValidationObservations) -> ValidationResult {
        guard case .read(let objects) = observed.objects else {
            return cannotRead(.flux, "ready", "Flux's objects", observed.objects, action: fluxInstalled)
        }
        // A suspended object is judged by `flux/suspended`: Flux does not reconcile it, so its
        // status is as old as the suspension.
        let active = objects.filter { !$0.suspended }
        let notReady = active.filter { $0.ready != "True" || $0.observedGeneration != $0.generation }
        let evidence = notReady.map { object in
            var line = "\(object.ref): Ready \(object.ready ?? "absent")"
            if object.observedGeneration != object.generation {
                line += ", observedGeneration \(object.observedGeneration) of generation \(object.generation)"
            }
            if !object.reason.isEmpty { line += " (\(object.reason)" + (object.message.isEmpty ? ")" : ": \(object.message.prefix(200)))") }
            return line
        }
        guard notReady.isEmpty else {
            return ValidationResult(area: .flux, check: "ready", verdict: .unhealthy,
                                    summary: "\(notReady.count) of \(active.count) not Ready at their generation: \(listed(notReady.map(\.ref)))",
                                    evidence: evidence,
                                    action: "`flux get all -A` shows why; fix the source or the manifests in Git, then "
                                        + "`flux reconcile kustomization NAME -n NAMESPACE --with-source`")
        }
        return ValidationResult(area: .flux, check: "ready", verdict: .healthy,
                                summary: "\(active.count) GitRepositories, Kustomizations and HelmReleases Ready at their generation")
    }

    static func fluxSuspended(_ observed: FluxValidationObservations) -> ValidationResult {
        guard case .read(let objects) = observed.objects else {
            return cannotRead(.flux, "suspended", "Flux's objects", observed.objects, action: fluxInstalled)
        }
        let suspended = objects.filter(\.suspended)
        guard case .read(let maintenance) = observed.maintenance else {
            guard !suspended.isEmpty else {
                return ValidationResult(area: .flux, check: "suspended", verdict: .healthy, summary: "none suspended")
            }
            return ValidationResult(area: .flux, check: "suspended", verdict: .unknown,
                                    summary: "\(suspended.count) suspended, and maintenance mode's record cannot be read: \(unreadable(observed.maintenance))",
                                    evidence: suspended.map(\.ref), action: "`upkeep maintenance status`")
        }
        let byMaintenance = suspended.filter { maintenance?.suspended.contains($0.ref) ?? false }
        let others = suspended.filter { !(maintenance?.suspended.contains($0.ref) ?? false) }
        let evidence = byMaintenance.map { "\($0.ref): suspended by maintenance mode \(maintenance?.id ?? "?")" }
            + others.map { "\($0.ref): suspended, not by maintenance mode" }
        guard others.isEmpty else {
            return ValidationResult(area: .flux, check: "suspended", verdict: .unhealthy,
                                    summary: "suspended, not by maintenance mode: \(listed(others.map(\.ref)))", evidence: evidence,
                                    action: "if nobody suspended \(others.count == 1 ? "it" : "them") on purpose, resume: "
                                        + others.prefix(5).map(resumeCommand).joined(separator: ", "))
        }
        let summary = byMaintenance.isEmpty ? "none suspended"
            : "\(byMaintenance.count) suspended by maintenance mode \(maintenance?.id ?? "?") only (`upkeep maintenance disable` resumes them)"
        return ValidationResult(area: .flux, check: "suspended", verdict: .healthy, summary: summary, evidence: evidence)
    }

    /// `flux resume kustomization NAME -n NAMESPACE` for `Kind/namespace/name`
    /// (https://fluxcd.io/flux/cmd/flux_resume/).
    static func resumeCommand(_ object: FluxValidationObservations.Object) -> String {
        let parts = object.ref.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { return "`flux resume` \(object.ref)" }
        let noun = switch parts[0] {
        case "GitRepository": "source git"
        case "HelmRelease": "helmrelease"
        default: "kustomization"
        }
        return "`flux resume \(noun) \(parts[2]) -n \(parts[1])`"
    }

    // MARK: - storage

    static let longhornInstalled = "is Longhorn installed? `kubectl get crd volumes.longhorn.io`; or leave out --storage"

    /// `storage/managers`, `storage/instance-managers`, `storage/attached`, `storage/detached`,
    /// `storage/rebuilds`, `storage/drain-policy`.
    public static func storage(_ observed: StorageValidationObservations) -> [ValidationResult] {
        [managers(observed), instanceManagers(observed), attached(observed), detached(observed), rebuilds(observed), drainPolicy(observed.drainPolicy)]
    }

    static func managers(_ observed: StorageValidationObservations) -> ValidationResult {
        guard case .read(let ready) = observed.managersReady else {
            return cannotRead(.storage, "managers", "longhorn-manager's pods", observed.managersReady,
                              action: "`kubectl -n longhorn-system get pods -l app=longhorn-manager -o wide`")
        }
        let missing = observed.nodes.filter { !ready.contains($0) }
        guard missing.isEmpty else {
            return ValidationResult(area: .storage, check: "managers", verdict: .unhealthy,
                                    summary: "longhorn-manager not running and Ready on \(listed(missing))",
                                    evidence: observed.nodes.map { "\($0): \(ready.contains($0) ? "Ready" : "no Ready pod")" },
                                    action: "`kubectl -n longhorn-system get pods -l app=longhorn-manager -o wide` and the pod's log; "
                                        + "a node without its manager serves no volume")
        }
        return ValidationResult(area: .storage, check: "managers", verdict: .healthy, summary: "longhorn-manager Ready on every node (\(observed.nodes.count))")
    }

    static func instanceManagers(_ observed: StorageValidationObservations) -> ValidationResult {
        guard case .read(let states) = observed.instanceManagers else {
            return cannotRead(.storage, "instance-managers", "the instance managers", observed.instanceManagers,
                              action: "`kubectl -n longhorn-system get instancemanagers.longhorn.io`")
        }
        let evidence = observed.nodes.map { "\($0): \(states[$0] ?? "none")" }
        let down = observed.nodes.filter { states[$0] != "running" }
        guard down.isEmpty else {
            return ValidationResult(area: .storage, check: "instance-managers", verdict: .unhealthy,
                                    summary: "no running instance manager on \(listed(down))", evidence: evidence,
                                    action: "`kubectl -n longhorn-system get instancemanagers.longhorn.io -o wide`; Longhorn does not start one "
                                        + "on a cordoned node: uncordon it when its work is done")
        }
        return ValidationResult(area: .storage, check: "instance-managers", verdict: .healthy,
                                summary: "an instance manager running on every node (\(observed.nodes.count))", evidence: evidence)
    }

    static func attached(_ observed: StorageValidationObservations) -> ValidationResult {
        guard case .read(let volumes) = observed.volumes else {
            return cannotRead(.storage, "attached", "Longhorn's volumes", observed.volumes, action: longhornInstalled)
        }
        // A detached volume reports robustness unknown; it is judged by its replicas (`detached`).
        let attached = volumes.filter { $0.state != "detached" }
        let bad = attached.filter { $0.state != "attached" || $0.robustness != "healthy" }
        let evidence = bad.map { volume in
            let complete = volume.replicas.filter { $0.complete && $0.running }.count
            return "\(volume.name): \(volume.state)\(volume.attachedNode.map { " on \($0)" } ?? ""), \(volume.robustness), "
                + "\(complete) of \(volume.replicasWanted) replicas complete and running"
        }
        guard bad.isEmpty else {
            return ValidationResult(area: .storage, check: "attached", verdict: .unhealthy,
                                    summary: "\(bad.count) of \(attached.count) attached volumes not healthy: \(listed(bad.map(\.name)))", evidence: evidence,
                                    action: "wait for Longhorn to rebuild (storage/rebuilds), bring back the nodes their replicas are on; "
                                        + "`kubectl -n longhorn-system get volumes.longhorn.io,replicas.longhorn.io -o wide` "
                                        + "(https://longhorn.io/docs/1.12.2/maintenance/maintenance/)")
        }
        return ValidationResult(area: .storage, check: "attached", verdict: .healthy, summary: "\(attached.count) attached volumes healthy")
    }

    static func detached(_ observed: StorageValidationObservations) -> ValidationResult {
        guard case .read(let volumes) = observed.volumes else {
            return cannotRead(.storage, "detached", "Longhorn's volumes", observed.volumes, action: longhornInstalled)
        }
        let detached = volumes.filter { $0.state == "detached" }
        let short = detached.filter { volume in volume.replicas.filter(\.complete).count < volume.replicasWanted }
        let evidence = short.map { volume in
            "\(volume.name): \(volume.replicas.filter(\.complete).count) of \(volume.replicasWanted) replicas complete"
                + (volume.replicas.isEmpty ? "" : " (" + volume.replicas.map { "\($0.name) on \($0.node): \($0.complete ? "complete" : "failed")" }
                    .joined(separator: ", ") + ")")
        }
        guard short.isEmpty else {
            return ValidationResult(area: .storage, check: "detached", verdict: .unhealthy,
                                    summary: "\(short.count) of \(detached.count) detached volumes short of complete replicas: \(listed(short.map(\.name)))",
                                    evidence: evidence,
                                    action: "Longhorn rebuilds only while a volume is attached: attach it (start its workload) and let it rebuild "
                                        + "before taking the nodes of its remaining replicas down")
        }
        return ValidationResult(area: .storage, check: "detached", verdict: .healthy,
                                summary: "\(detached.count) detached volumes with every replica complete")
    }

    static func rebuilds(_ observed: StorageValidationObservations) -> ValidationResult {
        guard case .read(let volumes) = observed.volumes else {
            return cannotRead(.storage, "rebuilds", "Longhorn's replicas", observed.volumes, action: longhornInstalled)
        }
        var lines: [(line: String, long: Bool, name: String)] = []
        for volume in volumes where volume.state == "attached" {
            for replica in volume.replicas where replica.running && !replica.complete {
                let seconds = replica.incompleteSince.map { max(0, Int(observed.now - $0)) }
                let long = (seconds ?? Int.max) > observed.rebuildSecondsMax
                lines.append(("\(replica.name) of \(volume.name) on \(replica.node): rebuilding "
                              + (seconds.map { "for \(duration($0))" } ?? "since an unknown time"), long, replica.name))
            }
        }
        let long = lines.filter(\.long)
        guard long.isEmpty else {
            return ValidationResult(area: .storage, check: "rebuilds", verdict: .unhealthy,
                                    summary: "\(long.count) replicas rebuilding longer than \(duration(observed.rebuildSecondsMax)): \(listed(long.map(\.name)))",
                                    evidence: lines.map(\.line),
                                    action: "look at the replica's node (disk, network) and `kubectl -n longhorn-system get replicas.longhorn.io -o wide`; "
                                        + "a larger volume may need a larger --rebuild-max")
        }
        return ValidationResult(area: .storage, check: "rebuilds", verdict: .healthy,
                                summary: lines.isEmpty ? "no replica rebuilding"
                                    : "\(lines.count) replicas rebuilding, none longer than \(duration(observed.rebuildSecondsMax))",
                                evidence: lines.map(\.line))
    }

    /// Longhorn's `node-drain-policy` (https://longhorn.io/docs/1.12.2/references/settings/#node-drain-policy),
    /// named so the operator knows what a drain will do.
    static func drainPolicy(_ reading: ValidationReading<String?>) -> ValidationResult {
        guard case .read(let value) = reading else {
            return cannotRead(.storage, "drain-policy", "the node-drain-policy setting", reading,
                              action: "`kubectl -n longhorn-system get settings.longhorn.io node-drain-policy`")
        }
        let policy = value ?? "block-if-contains-last-replica"
        let meaning = switch policy {
        case "block-if-contains-last-replica": "a drain waits while the node holds a volume's last healthy replica"
        case "block-for-eviction": "a drain waits until every replica on the node is evicted to another node"
        case "block-for-eviction-if-contains-last-replica": "a drain waits until the node's last healthy replicas are evicted"
        case "allow-if-replica-is-stopped": "a drain goes on when the last replica is stopped (data is lost if the node never returns)"
        case "always-allow": "a drain never waits for Longhorn (not for production: a volume may lose its last replica)"
        default: "a policy Upkeep does not know"
        }
        return ValidationResult(area: .storage, check: "drain-policy", verdict: .healthy,
                                summary: "node-drain-policy \(policy)\(value == nil ? " (Longhorn's default)" : ""): \(meaning)")
    }

    // MARK: - networking

    /// `networking/dns` (CoreDNS) and `networking/ingress` (Traefik).
    public static func networking(_ observed: NetworkingValidationObservations) -> [ValidationResult] {
        [workload(.networking, "dns", "CoreDNS", observed.dns,
                  absent: "k3s deploys CoreDNS unless started with --disable coredns; pods cannot resolve Services without a cluster DNS "
                      + "(https://docs.k3s.io/networking/networking-services#coredns)"),
         workload(.networking, "ingress", "Traefik", observed.ingress,
                  absent: "k3s deploys Traefik unless started with --disable traefik; with another ingress controller, leave out --networking "
                      + "(https://docs.k3s.io/networking/networking-services#traefik-ingress-controller)")]
    }

    /// A Deployment fully rolled out: at least one replica, every replica updated and available,
    /// its status about the current spec.
    static func workload(_ area: ValidationArea, _ check: String, _ what: String, _ reading: ValidationReading<WorkloadObservation?>,
                         absent: String) -> ValidationResult {
        guard case .read(let observed) = reading else {
            return cannotRead(area, check, what, reading, action: "`kubectl get deployments -A`")
        }
        guard let workload = observed else {
            return ValidationResult(area: area, check: check, verdict: .unhealthy, summary: "\(what) is not deployed", action: absent)
        }
        let evidence = ["\(workload.ref): \(workload.available) available, \(workload.updated) updated of \(workload.replicas)"
                        + (workload.observedCurrent ? "" : "; its controller has not observed the current spec yet")]
        let action = "`kubectl -n \(workload.namespace) describe \(workload.kind.rawValue.lowercased()) \(workload.name)` and its pods' events"
        guard workload.replicas >= 1 else {
            return ValidationResult(area: area, check: check, verdict: .unhealthy, summary: "\(what) is scaled to 0 (\(workload.ref))", evidence: evidence,
                                    action: action)
        }
        guard workload.available >= workload.replicas && workload.updated >= workload.replicas && workload.observedCurrent else {
            return ValidationResult(area: area, check: check, verdict: .unhealthy,
                                    summary: "\(what) not fully available: \(workload.available) of \(workload.replicas) (\(workload.ref))", evidence: evidence,
                                    action: action)
        }
        return ValidationResult(area: area, check: check, verdict: .healthy,
                                summary: "\(what) available: \(workload.available) of \(workload.replicas) (\(workload.ref))", evidence: evidence)
    }

    // MARK: - applications

    /// One check per declared workload (`applications/Deployment/default/web`) and URL
    /// (`applications/GET https://…`), in the order `validate.applications` lists them.
    public static func applications(_ observed: ApplicationValidationObservations) -> [ValidationResult] {
        observed.workloads.map { declared in
            workload(.applications, "\(declared.kind.rawValue)/\(declared.namespace)/\(declared.name)", declared.name, declared.reading,
                     absent: "no \(declared.kind.rawValue) \(declared.namespace)/\(declared.name): deploy it, or correct validate.applications in upkeep.yaml")
        } + observed.probes.map(probe) + observed.queries.map(query)
    }

    /// `applications/prometheus QUERY`: healthy when every sample is a number below the
    /// threshold; `NaN` and a value that is not a number (a `string` result) are not below
    /// anything. An empty answer is healthy or not as `whenEmpty` declares; an unreadable
    /// Prometheus is unknown.
    static func query(_ query: ApplicationValidationObservations.Query) -> ValidationResult {
        let check = "prometheus \(query.query)"
        let threshold = number(query.below)
        let samples: [ApplicationValidationObservations.Query.Sample]
        switch query.answer {
        case .unreadable(let why):
            return ValidationResult(area: .applications, check: check, verdict: .unknown, summary: "cannot ask Prometheus: \(why)",
                                    action: "check gates.prometheus in upkeep.yaml and that Prometheus runs")
        case .read(let read):
            samples = read
        }
        guard !samples.isEmpty else {
            return ValidationResult(area: .applications, check: check, verdict: query.emptyIsHealthy ? .healthy : .unhealthy,
                                    summary: "the query matched nothing (whenEmpty: \(query.emptyIsHealthy ? "healthy" : "unhealthy"))",
                                    action: query.emptyIsHealthy ? nil
                                        : "check that Prometheus scrapes what the query reads, or declare whenEmpty: healthy in validate.applications")
        }
        let over = samples.filter { sample in
            guard let value = Double(sample.value), !value.isNaN else { return true }
            return !(value < query.below)
        }
        let evidence = (over + samples.filter { !over.contains($0) }).map { "\($0.series.isEmpty ? "{}" : $0.series): \($0.value)" }
        guard over.isEmpty else {
            return ValidationResult(area: .applications, check: check, verdict: .unhealthy,
                                    summary: "\(over.count) of \(samples.count) samples not below \(threshold)", evidence: evidence,
                                    action: "look at what the query measures (`upkeep metrics --query` shows it), or correct below: in validate.applications")
        }
        return ValidationResult(area: .applications, check: check, verdict: .healthy,
                                summary: "\(samples.count) of \(samples.count) samples below \(threshold)", evidence: evidence)
    }

    /// `0.9`, `100` (no `.0` on a whole number).
    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func probe(_ probe: ApplicationValidationObservations.Probe) -> ValidationResult {
        let check = "GET \(probe.url)"
        switch probe.answer {
        case .read(let status) where status == probe.expectedStatus:
            return ValidationResult(area: .applications, check: check, verdict: .healthy, summary: "answered \(status) as expected")
        case .read(let status):
            return ValidationResult(area: .applications, check: check, verdict: .unhealthy, summary: "answered \(status), expected \(probe.expectedStatus)",
                                    action: "look at the application behind \(probe.url) (its pods, its Service, the ingress route)")
        case .unreadable(let why):
            return ValidationResult(area: .applications, check: check, verdict: .unhealthy, summary: "no answer: \(why)",
                                    action: "check that \(probe.url) is reachable from this machine and its application runs")
        }
    }

    // MARK: - helpers

    /// The check `area/check` unknown because `what` could not be read.
    static func cannotRead<T: Equatable & Sendable>(_ area: ValidationArea, _ check: String, _ what: String, _ reading: ValidationReading<T>,
                                                    action: String) -> ValidationResult {
        ValidationResult(area: area, check: check, verdict: .unknown, summary: "cannot read \(what): \(unreadable(reading))", action: action)
    }

    static func unreadable<T: Equatable & Sendable>(_ reading: ValidationReading<T>) -> String {
        if case .unreadable(let why) = reading { return why }
        return "read"
    }

    static func listed(_ names: [String]) -> String { GateCheck.listed(names) }

    /// `45 s`, `12 min`, `2 h 5 min`.
    static func duration(_ seconds: Int) -> String {
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        return "\(seconds / 3600) h \(seconds % 3600 / 60) min"
    }
}

extension Array where Element == ValidationResult {
    /// Healthy only when every check is.
    public var allHealthy: Bool { allSatisfy(\.isHealthy) }
}
