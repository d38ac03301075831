import Foundation
import Synchronization
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepPKI
import UpkeepPOSIX
import UpkeepProtocol
import UpkeepStore
import UpkeepTLS
import UpkeepUpdates

/// Everything a cluster command talks to, made from `upkeep.yaml`: the Kubernetes API, the
/// release source, the agents and the artifact cache. Each failure names the setting to fix.
/// The agents are one `AgentFleet` for the whole session (one connection per agent, made when
/// first asked, closed with the session), or the one a longer-lived owner lends it
/// (`upkeep serve`).
final class ClusterSession: Sendable {
    let config: ControllerConfig
    let stateDirectory: String
    let kube: KubeClient
    /// The cluster Lease's own connections, each request bounded well under its renew deadline.
    let leaseClient: KubeClient
    let observer: KubeClusterObserver
    let releaseClient: HTTPClient
    let source: any ReleaseSource
    /// The session's agents once asked for; `lentAgents` when an owner outside lends them.
    private let agents: Mutex<AgentFleet?>
    private let lentAgents: Bool

    private init(config: ControllerConfig, stateDirectory: String, kube: KubeClient, leaseClient: KubeClient, releaseClient: HTTPClient,
                 source: any ReleaseSource, agents: AgentFleet?) {
        self.agents = Mutex(agents)
        lentAgents = agents != nil
        self.config = config
        self.stateDirectory = stateDirectory
        self.kube = kube
        self.leaseClient = leaseClient
        observer = KubeClusterObserver(client: kube, agentPort: config.agentPort)
        self.releaseClient = releaseClient
        self.source = source
    }

    /// `agents`: a fleet the caller keeps (and closes) beyond this session.
    static func open(_ config: ControllerConfig, agents: AgentFleet? = nil) throws -> ClusterSession {
        let stateDirectory = config.resolvedStateDirectory()
        let access = ReleaseAccess(config.releases, userAgent: "upkeep/0.1")
        let releaseClient: HTTPClient
        let source: any ReleaseSource
        do {
            try ReleaseAccess.ensureStateDirectory(stateDirectory)
            releaseClient = try access.makeHTTPClient(stateDirectory: stateDirectory)
            source = try access.makeSource(client: releaseClient)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "releases: \(error)")
        }
        let kube: KubeClient
        let leaseClient: KubeClient
        do {
            kube = try KubeClient(kubeconfig: config.kubeconfig, context: config.context)
            leaseClient = try ClusterLeaseAccess.client(config, endpoint: kube.endpoint)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "kubeconfig: \(error); set kubeconfig in \(config.source ?? "upkeep.yaml") or KUBECONFIG")
        }
        return ClusterSession(config: config, stateDirectory: stateDirectory, kube: kube, leaseClient: leaseClient, releaseClient: releaseClient,
                              source: source, agents: agents)
    }

    /// Opens a session for `config`, runs `body`, closes the session whatever happened.
    /// `agents`: a fleet the caller keeps (and closes) beyond this session.
    static func with<T>(_ config: ControllerConfig, agents: AgentFleet? = nil, _ body: (ClusterSession) async throws -> T) async throws -> T {
        let session = try open(config, agents: agents)
        do {
            let result = try await body(session)
            await session.close()
            return result
        } catch {
            await session.close()
            throw error
        }
    }

    /// Maintenance mode on this cluster, as upkeep.yaml configures it.
    func maintenanceMode(store: StateStore, say: @escaping @Sendable (String) -> Void) -> MaintenanceMode {
        MaintenanceMode(kube: kube, store: store, settings: config.maintenance,
                        notifier: MaintenanceNotifications.notifier(for: config, store: store), say: say)
    }

    func close() async {
        if !lentAgents, let fleet = agents.withLock({ $0 }) { await fleet.close() }
        await releaseClient.shutdown()
        await kube.shutdown()
        await leaseClient.shutdown()
    }

    /// The cluster Lease for operations of this controller (its id from the state directory),
    /// counting its events in `store`.
    func clusterLease(store: StateStore) throws -> ClusterLease {
        try ClusterLeaseAccess.lease(config, client: leaseClient, store: store, stateDirectory: stateDirectory)
    }

    /// Refuses (exit 6) when another controller holds the cluster Lease now, before anything is
    /// planned: a cluster another controller is upgrading is no ground for a plan. Only a look:
    /// the Lease is taken when the operation starts; a Lease that cannot be read is left to that.
    func refuseIfLeaseHeld(store: StateStore) async throws {
        let lease = try clusterLease(store: store)
        guard let spec = try? await lease.observe()?.spec, let holder = spec.holderIdentity,
              LeaseElection.Candidate.controllerID(of: holder) != lease.controllerID, LeaseElection.isLive(spec, at: .wallClockNow()) else { return }
        let error = ClusterLockError.held(lock: ClusterLease.lockName, holder: holder, renewedAt: spec.renewTime.map { Instant(milliseconds: Int64($0 * 1000)) },
                                          expiresAt: LeaseElection.expiry(of: spec))
        throw CommandFailure(code: RolloutExitCode.leaseHeld, message: "\(error); nothing was planned")
    }

    // MARK: - Reading

    /// Nodes, agent addresses and Longhorn volumes.
    func read() async throws -> FleetReading {
        do {
            return try await observer.read()
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "\(error)")
        }
    }

    /// `read()`, or, when the API cannot be read, the agents at their last known addresses
    /// (a recovery carries on with the API down); the reason is said. `live` is false then.
    func readOrLastKnown(_ store: StateStore) async throws -> (reading: FleetReading, live: Bool) {
        do {
            return (try await read(), true)
        } catch let failure as CommandFailure {
            let known = (try? store.agentInventory()) ?? []
            guard !known.isEmpty else { throw failure }
            print("note: \(failure.message); reaching the agents at their last known addresses (read \(known[0].seenAt.utcDescription))")
            return (FleetReading(nodes: known.map(\.fleetNode), volumes: []), false)
        }
    }

    /// Released versions of `component` (k3s unless said; pre-releases on request), newest first.
    func availableVersions(of component: Component = .k3s, includePreReleases: Bool, oldestInstalled: K3sVersion?) async throws -> [K3sVersion] {
        do {
            let list = try await source.releases(of: component, oldestInstalled: oldestInstalled)
            return list.releases.filter { !$0.draft && (includePreReleases || !$0.prerelease) }.map(\.version).sorted(by: >)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read \(component.rawValue) releases from \(source): \(error)")
        }
    }

    /// `--to V` as given, or the version `--channel C` points at now.
    func resolveTarget(to: String?, channel: String?) async throws -> K3sVersion {
        if let to {
            do { return try K3sVersion(to) } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "--to \(to): \(error); write a k3s version such as v1.31.4+k3s1")
            }
        }
        let name = channel ?? "stable"
        do {
            return try await source.channel(named: name)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot resolve channel \(name) through \(source): \(error)")
        }
    }

    // MARK: - Agents and artifacts

    /// The session's connections to the agents, now at the addresses of `reading`,
    /// authenticated with the controller's certificate from `pki`. Every caller in the session
    /// gets the same fleet: a connection made for the cross-check serves the rollout and the
    /// validation after it. The session closes it; callers never do.
    func fleet(for reading: FleetReading) async throws -> AgentFleet {
        let fleet: AgentFleet
        if let known = agents.withLock({ $0 }) {
            fleet = known
        } else {
            let made = AgentFleet(security: try Self.fleetSecurity(config))
            // Two first callers at once: the first kept wins, the other's fleet never dialled.
            fleet = agents.withLock { kept in
                if let kept { return kept }
                kept = made
                return made
            }
        }
        await fleet.setEndpoints(reading.agentEndpoints)
        return fleet
    }

    /// The controller's identity from `pki`, as the agents must see it.
    static func fleetSecurity(_ config: ControllerConfig) throws -> FleetSecurity {
        do {
            return try FleetSecurity.load(caFile: config.pki.ca, certificateFile: config.pki.certificate, keyFile: config.pki.key,
                                          deniedFile: config.pki.revokedFile)
        } catch let error as OwnIdentityError {
            throw CommandFailure(code: RolloutExitCode.usage, message: "pki: \(error)")
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "pki: \(error); issue a controller certificate with `upkeep pki issue controller` and set pki in upkeep.yaml")
        }
    }

    /// The digest-addressed cache of k3s binaries, fed from the mirror or the release downloads.
    func artifactCache() throws -> ArtifactCache {
        let indexKey: MirrorIndex.TrustedKey?
        do { indexKey = try config.releases.indexKey.map { try MirrorIndex.TrustedKey(file: $0) } } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "releases.indexKey: \(error)")
        }
        do {
            let trust: TrustRoots = try config.releases.caFile.map { .certificates(try Certificate.loadChain(pemFile: $0)) } ?? .system
            if let mirror = config.releases.mirror, !mirror.contains("://") {
                return try ArtifactCache(stateDirectory: stateDirectory, source: .directory(mirror), client: nil, indexKey: indexKey)
            }
            let access = ReleaseAccess(config.releases, userAgent: "upkeep/0.1")
            try access.checkTransport([config.releases.mirror.map { ("mirror", $0) } ?? ("github-api", config.releases.githubAPI)])
            if let mirror = config.releases.mirror {
                return try ArtifactCache(stateDirectory: stateDirectory, source: .http(try HTTPURL(mirror)),
                                         client: try ArtifactCache.makeHTTPClient(trust: trust, userAgent: "upkeep/0.1"), indexKey: indexKey)
            }
            // From GitHub (or a server playing it): its releases API vouches for each digest too.
            let releases = try (source as? GitHubReleaseSource) ?? access.makeGitHubSource(client: releaseClient)
            let digests = GitHubPublishedDigests(releases: releases)
            return try ArtifactCache(stateDirectory: stateDirectory, source: .http(ArtifactSource.downloadBase(forAPI: try HTTPURL(config.releases.githubAPI))),
                                     client: try ArtifactCache.makeHTTPClient(trust: trust, userAgent: "upkeep/0.1"), publishedDigests: digests)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "artifacts: \(error)")
        }
    }
}

/// One agent's state as `upkeep agents` and the preflight print it.
struct AgentRow: Encodable {
    var node: String
    var role: String
    var endpoint: String?
    var state: String
    var detail: String?
    var agentVersion: String?
    var k3sVersion: String?
    var latencyMilliseconds: Double?

    init(_ inspection: AgentInspection, role: UpkeepCore.NodeRole?) {
        node = inspection.node
        self.role = role?.rawValue ?? "?"
        endpoint = inspection.endpoint?.description
        agentVersion = inspection.agent?.agentVersion
        k3sVersion = inspection.agent?.k3sVersion
        latencyMilliseconds = inspection.latencyMilliseconds.map { ($0 * 10).rounded() / 10 }
        switch inspection.verdict {
        case .reachable: state = "ok"
        case .wrongNode(let why): state = "wrong-node"; detail = why
        case .versionMismatch(let agent, let kubelet):
            state = "version-mismatch"
            detail = "the agent runs \(agent ?? "an unknown k3s"), the API shows \(kubelet)"
        case .unreachable(let why): state = "unreachable"; detail = why
        }
    }

    var isGood: Bool { state == "ok" }

    static func table(_ rows: [AgentRow]) -> String {
        renderTable(["NODE", "ROLE", "ADDRESS", "STATE", "K3S", "AGENT", "RTT"], rows.map { row in
            [row.node, row.role, row.endpoint ?? "-", row.state + (row.detail.map { ": \($0)" } ?? ""), row.k3sVersion ?? "-",
             row.agentVersion ?? "-", row.latencyMilliseconds.map { String(format: "%.1f ms", $0) } ?? "-"]
        })
    }
}

extension AgentInventoryRecord {
    /// The node as a reading names it, with its agent's last known address.
    var fleetNode: FleetNode {
        FleetNode(node: InventoryNode(name: node, role: role, etcd: etcd, arch: arch, version: k3sVersion, ready: false),
                  agent: endpoint.flatMap(AgentEndpoint.init))
    }
}
