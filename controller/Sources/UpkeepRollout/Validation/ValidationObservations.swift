/// What `upkeep validate` read of the cluster, as plain data: the shell fills it in (the
/// Kubernetes API, the server agents, the state database), `ValidationVerdicts` judges it.
public struct ClusterValidationObservations: Equatable, Sendable {
    public struct Node: Equatable, Sendable {
        public var name: String
        public var server: Bool
        public var ready: Bool
        public var version: String
        /// `spec.unschedulable`.
        public var cordoned: Bool

        public init(name: String, server: Bool, ready: Bool, version: String, cordoned: Bool) {
            self.name = name
            self.server = server
            self.ready = ready
            self.version = version
            self.cordoned = cordoned
        }
    }

    /// The rollout of this controller that has not finished, if any.
    public struct Rollout: Equatable, Sendable {
        public var id: String
        public var target: String
        /// `running`, `blocked`, … as the state database holds it.
        public var status: String
        /// The nodes it cordoned and has not uncordoned yet.
        public var cordoned: [String]

        public init(id: String, target: String, status: String, cordoned: [String]) {
            self.id = id
            self.target = target
            self.status = status
            self.cordoned = cordoned
        }
    }

    public var nodes: ValidationReading<[Node]>
    public var rollout: Rollout?
    /// The etcd members as the server agents report them (`etcdHealth`), as the etcd gate reads them.
    public var etcd: EtcdReading

    public init(nodes: ValidationReading<[Node]>, rollout: Rollout?, etcd: EtcdReading) {
        self.nodes = nodes
        self.rollout = rollout
        self.etcd = etcd
    }
}

/// What `upkeep validate --flux` read.
public struct FluxValidationObservations: Equatable, Sendable {
    /// A Flux controller Deployment in `flux-system`.
    public struct Controller: Equatable, Sendable {
        public var name: String
        public var replicas: Int
        public var available: Int
        /// The Deployment's `Available` condition is True.
        public var availableCondition: Bool

        public init(name: String, replicas: Int, available: Int, availableCondition: Bool) {
            self.name = name
            self.replicas = replicas
            self.available = available
            self.availableCondition = availableCondition
        }
    }

    /// A GitRepository, Kustomization or HelmRelease.
    public struct Object: Equatable, Sendable {
        /// `Kind/namespace/name`, as maintenance mode records it.
        public var ref: String
        public var suspended: Bool
        /// The `Ready` condition's status (`True`, `False`, `Unknown`; nil when there is none).
        public var ready: String?
        public var reason: String
        public var message: String
        public var generation: Int64
        public var observedGeneration: Int64

        public init(ref: String, suspended: Bool, ready: String?, reason: String = "", message: String = "", generation: Int64,
                    observedGeneration: Int64) {
            self.ref = ref
            self.suspended = suspended
            self.ready = ready
            self.reason = reason
            self.message = message
            self.generation = generation
            self.observedGeneration = observedGeneration
        }
    }

    /// Maintenance mode as the cluster records it: what it suspended (and will resume).
    public struct Maintenance: Equatable, Sendable {
        public var id: String
        public var suspended: Set<String>

        public init(id: String, suspended: Set<String>) {
            self.id = id
            self.suspended = suspended
        }
    }

    /// Unreadable when Flux is not installed (its CRDs absent) or the API failed.
    public var objects: ValidationReading<[Object]>
    public var controllers: ValidationReading<[Controller]>
    public var maintenance: ValidationReading<Maintenance?>

    public init(objects: ValidationReading<[Object]>, controllers: ValidationReading<[Controller]>, maintenance: ValidationReading<Maintenance?>) {
        self.objects = objects
        self.controllers = controllers
        self.maintenance = maintenance
    }
}

/// What `upkeep validate --storage` read of Longhorn.
public struct StorageValidationObservations: Equatable, Sendable {
    public struct Replica: Equatable, Sendable {
        public var name: String
        public var node: String
        /// `status.currentState == running`.
        public var running: Bool
        /// Holds a complete copy: `spec.healthyAt` set and `spec.failedAt` empty.
        public var complete: Bool
        /// Since when it is incomplete (`spec.failedAt`, else its creation), in Unix seconds.
        public var incompleteSince: Double?

        public init(name: String, node: String, running: Bool, complete: Bool, incompleteSince: Double? = nil) {
            self.name = name
            self.node = node
            self.running = running
            self.complete = complete
            self.incompleteSince = incompleteSince
        }
    }

    public struct Volume: Equatable, Sendable {
        public var name: String
        /// `attached`, `detached`, `attaching`, …
        public var state: String
        /// `healthy`, `degraded`, `faulted`, `unknown`.
        public var robustness: String
        public var attachedNode: String?
        public var replicasWanted: Int
        public var replicas: [Replica]

        public init(name: String, state: String, robustness: String, attachedNode: String?, replicasWanted: Int, replicas: [Replica]) {
            self.name = name
            self.state = state
            self.robustness = robustness
            self.attachedNode = attachedNode
            self.replicasWanted = replicasWanted
            self.replicas = replicas
        }
    }

    /// Every Kubernetes node's name: where Longhorn's manager and an instance manager must run.
    public var nodes: [String]
    /// Nodes with a Ready `longhorn-manager` pod.
    public var managersReady: ValidationReading<Set<String>>
    /// Instance managers' state by node (`running`, `stopped`, `starting`, `error`, …); a node
    /// with several keeps the best.
    public var instanceManagers: ValidationReading<[String: String]>
    /// Unreadable when Longhorn is not installed (its CRDs absent) or the API failed.
    public var volumes: ValidationReading<[Volume]>
    /// The `node-drain-policy` setting; nil when it is not set (Longhorn's default applies).
    public var drainPolicy: ValidationReading<String?>
    /// When the observations were made, in Unix seconds.
    public var now: Double
    /// A replica rebuilding longer than this is reported.
    public var rebuildSecondsMax: Int

    public init(nodes: [String], managersReady: ValidationReading<Set<String>>, instanceManagers: ValidationReading<[String: String]>,
                volumes: ValidationReading<[Volume]>, drainPolicy: ValidationReading<String?>, now: Double, rebuildSecondsMax: Int) {
        self.nodes = nodes
        self.managersReady = managersReady
        self.instanceManagers = instanceManagers
        self.volumes = volumes
        self.drainPolicy = drainPolicy
        self.now = now
        self.rebuildSecondsMax = rebuildSecondsMax
    }
}

/// A Deployment, DaemonSet or StatefulSet as `upkeep validate` judges its rollout, as `kubectl rollout status`
/// does (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_rollout/kubectl_rollout_status/):
/// every wanted replica (a DaemonSet: every node it should run on) updated and available, the
/// controller caught up with its spec.
public struct WorkloadObservation: Equatable, Sendable {
    public enum Kind: String, Equatable, Sendable {
        case deployment = "Deployment"
        case daemonSet = "DaemonSet"
        case statefulSet = "StatefulSet"
    }

    public var kind: Kind = .deployment
    public var namespace: String
    public var name: String
    public var replicas: Int
    public var updated: Int
    public var available: Int
    /// `status.observedGeneration >= metadata.generation`: the status is about the current spec.
    public var observedCurrent: Bool

    public init(kind: Kind = .deployment, namespace: String, name: String, replicas: Int, updated: Int, available: Int, observedCurrent: Bool) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.replicas = replicas
        self.updated = updated
        self.available = available
        self.observedCurrent = observedCurrent
    }

    /// `Deployment/kube-system/coredns`.
    public var ref: String { "\(kind.rawValue)/\(namespace)/\(name)" }
}

/// What `upkeep validate --networking` read: k3s's packaged CoreDNS and Traefik
/// (https://docs.k3s.io/networking/networking-services); nil where the Deployment does not exist.
public struct NetworkingValidationObservations: Equatable, Sendable {
    public var dns: ValidationReading<WorkloadObservation?>
    public var ingress: ValidationReading<WorkloadObservation?>

    public init(dns: ValidationReading<WorkloadObservation?>, ingress: ValidationReading<WorkloadObservation?>) {
        self.dns = dns
        self.ingress = ingress
    }
}

/// What `upkeep validate --applications` read for the checks `validate.applications` declares.
public struct ApplicationValidationObservations: Equatable, Sendable {
    /// A declared Deployment, DaemonSet or StatefulSet; nil where it does not exist.
    public struct Workload: Equatable, Sendable {
        public var kind: WorkloadObservation.Kind
        public var namespace: String
        public var name: String
        public var reading: ValidationReading<WorkloadObservation?>

        public init(kind: WorkloadObservation.Kind, namespace: String, name: String, reading: ValidationReading<WorkloadObservation?>) {
            self.kind = kind
            self.namespace = namespace
            self.name = name
            self.reading = reading
        }
    }

    /// A declared URL: the status it answered a GET with, or why it did not answer.
    public struct Probe: Equatable, Sendable {
        public var url: String
        public var expectedStatus: Int
        public var answer: ValidationReading<Int>

        public init(url: String, expectedStatus: Int, answer: ValidationReading<Int>) {
            self.url = url
            self.expectedStatus = expectedStatus
            self.answer = answer
        }
    }

    /// A declared Prometheus instant query: every sample must be below `below`.
    public struct Query: Equatable, Sendable {
        /// One sample of the answer: its series' labels as PromQL writes them (`{job="x"}`) and
        /// its value as Prometheus writes it (`0.25`, `NaN`, `+Inf`).
        public struct Sample: Equatable, Sendable {
            public var series: String
            public var value: String

            public init(series: String, value: String) {
                self.series = series
                self.value = value
            }
        }

        public var query: String
        public var below: Double
        /// The verdict when the query matches nothing (`whenEmpty`).
        public var emptyIsHealthy: Bool
        public var answer: ValidationReading<[Sample]>

        public init(query: String, below: Double, emptyIsHealthy: Bool, answer: ValidationReading<[Sample]>) {
            self.query = query
            self.below = below
            self.emptyIsHealthy = emptyIsHealthy
            self.answer = answer
        }
    }

    public var workloads: [Workload]
    public var probes: [Probe]
    public var queries: [Query]

    public init(workloads: [Workload], probes: [Probe], queries: [Query] = []) {
        self.workloads = workloads
        self.probes = probes
        self.queries = queries
    }
}
