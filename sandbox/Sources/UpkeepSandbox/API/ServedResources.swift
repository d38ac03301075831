import UpkeepKube

/// One column of a server-side table (`kubectl get` output), as an API server declares it.
struct TableColumn: Sendable {
    var name: String
    var type: String = "string"
    var format: String = ""
    var description: String = ""
    /// 0: always shown; 1: only with `-o wide`.
    var priority: Int = 0
    var cell: @Sendable (JSON, Double) -> JSON
}

/// A resource the simulated API serves: its discovery entry, subresources and table columns.
struct ServedResource: Sendable {
    var type: ResourceType
    var singular: String
    var shortNames: [String] = []
    var categories: [String] = []
    var verbs: [String] = ["create", "delete", "get", "list", "patch", "update"]
    var subresources: [String] = ["status"]
    /// Custom resources refuse strategic merge patches (415), as a real API server does.
    var isCustom = false
    /// An update (PUT) must carry the `resourceVersion` it read (422 without), and a PUT to an
    /// absent object creates it: the apiserver's Lease strategy (`AllowUnconditionalUpdate`
    /// false, `AllowCreateOnUpdate` true, pkg/registry/coordination/lease/strategy.go).
    var isLeaseLike = false
    var columns: [TableColumn]

    var hasStatus: Bool { subresources.contains("status") }
}

/// Column helpers shaped like the JSONPath columns of CRDs and the built-in printers.
enum Cells {
    static func string(_ path: String...) -> @Sendable (JSON, Double) -> JSON {
        { object, _ in
            switch object[pathArray: path] {
            case .string(let s)?: .string(s)
            case .int(let i)?: .string(String(i))
            case .bool(let b)?: .string(b ? "true" : "false")
            default: .string("")
            }
        }
    }

    static func integer(_ path: String...) -> @Sendable (JSON, Double) -> JSON {
        { object, _ in .int(object[pathArray: path]?.int ?? 0) }
    }

    static func conditionStatus(_ type: String) -> @Sendable (JSON, Double) -> JSON {
        { object, _ in .string(condition(object, type)?["status"]?.string ?? "") }
    }

    static func conditionMessage(_ type: String) -> @Sendable (JSON, Double) -> JSON {
        { object, _ in .string(condition(object, type)?["message"]?.string ?? "") }
    }

    static func condition(_ object: JSON, _ type: String) -> JSON? {
        object[path: "status", "conditions"]?.array?.first { $0["type"]?.string == type }
    }

    static let age: @Sendable (JSON, Double) -> JSON = { object, now in
        guard let created = object[path: "metadata", "creationTimestamp"]?.string.flatMap(KubeTime.parse) else { return "<unknown>" }
        return .string(KubeTime.age(now - created))
    }

    static let name: @Sendable (JSON, Double) -> JSON = { object, _ in object[path: "metadata", "name"] ?? "" }

    static func nameColumn(_ kind: String) -> TableColumn {
        TableColumn(name: "Name", format: "name", description: "Name must be unique within a namespace.", cell: name)
    }

    static let ageColumn = TableColumn(name: "Age", description: "CreationTimestamp is a timestamp representing the server time when this object was created.", cell: age)
}

extension ServedResource {
    /// Everything the sandbox serves, in discovery order.
    static let all: [ServedResource] = [
        ServedResource(type: .namespaces, singular: "namespace", shortNames: ["ns"], subresources: ["status"],
                       columns: [Cells.nameColumn("Namespace"), TableColumn(name: "Status", cell: Cells.string("status", "phase")), Cells.ageColumn]),
        ServedResource(type: .nodes, singular: "node", shortNames: ["no"], subresources: ["status"], columns: NodeColumns.columns),
        ServedResource(type: .pods, singular: "pod", shortNames: ["po"], categories: ["all"], subresources: ["status", "eviction"],
                       columns: PodColumns.columns),
        ServedResource(type: .events, singular: "event", shortNames: ["ev"], subresources: [],
                       columns: [Cells.nameColumn("Event"), TableColumn(name: "Reason", cell: Cells.string("reason")),
                                 TableColumn(name: "Message", cell: Cells.string("message"))]),
        ServedResource(type: .configMaps, singular: "configmap", shortNames: ["cm"], subresources: [],
                       columns: [Cells.nameColumn("ConfigMap"),
                                 TableColumn(name: "Data", type: "integer", cell: { o, _ in .int(Int64(o["data"]?.object?.count ?? 0)) }),
                                 Cells.ageColumn]),
        ServedResource(type: .services, singular: "service", shortNames: ["svc"], categories: ["all"], subresources: ["status"],
                       columns: ServiceColumns.columns),
        ServedResource(type: .deployments, singular: "deployment", shortNames: ["deploy"], categories: ["all"],
                       subresources: ["status", "scale"], columns: WorkloadColumns.deployment),
        ServedResource(type: .replicaSets, singular: "replicaset", shortNames: ["rs"], categories: ["all"],
                       subresources: ["status", "scale"], columns: WorkloadColumns.replicaSet),
        ServedResource(type: .daemonSets, singular: "daemonset", shortNames: ["ds"], categories: ["all"],
                       columns: WorkloadColumns.daemonSet),
        ServedResource(type: .statefulSets, singular: "statefulset", shortNames: ["sts"], categories: ["all"],
                       subresources: ["status", "scale"], columns: WorkloadColumns.statefulSet),
        ServedResource(type: .podDisruptionBudgets, singular: "poddisruptionbudget", shortNames: ["pdb"],
                       columns: WorkloadColumns.podDisruptionBudget),
        ServedResource(type: .leases, singular: "lease", subresources: [], isLeaseLike: true,
                       columns: [Cells.nameColumn("Lease"), TableColumn(name: "Holder", cell: Cells.string("spec", "holderIdentity")), Cells.ageColumn]),
        ServedResource(type: .customResourceDefinitions, singular: "customresourcedefinition", shortNames: ["crd", "crds"],
                       columns: [Cells.nameColumn("CustomResourceDefinition"),
                                 TableColumn(name: "Created At", type: "date", cell: Cells.string("metadata", "creationTimestamp"))]),
        ServedResource(type: .longhornVolumes, singular: "volume", shortNames: ["lhv"], categories: ["longhorn"], isCustom: true,
                       columns: [Cells.nameColumn("Volume"),
                                 TableColumn(name: "Data Engine", cell: Cells.string("spec", "dataEngine")),
                                 TableColumn(name: "State", cell: Cells.string("status", "state")),
                                 TableColumn(name: "Robustness", cell: Cells.string("status", "robustness")),
                                 TableColumn(name: "Scheduled", cell: Cells.conditionStatus("Scheduled")),
                                 TableColumn(name: "Size", cell: Cells.string("spec", "size")),
                                 TableColumn(name: "Node", cell: Cells.string("status", "currentNodeID")),
                                 Cells.ageColumn]),
        ServedResource(type: .longhornReplicas, singular: "replica", shortNames: ["lhr"], categories: ["longhorn"], isCustom: true,
                       columns: [Cells.nameColumn("Replica"),
                                 TableColumn(name: "Data Engine", cell: Cells.string("spec", "dataEngine")),
                                 TableColumn(name: "State", cell: Cells.string("status", "currentState")),
                                 TableColumn(name: "Node", cell: Cells.string("spec", "nodeID")),
                                 TableColumn(name: "Disk", cell: Cells.string("spec", "diskID")),
                                 TableColumn(name: "InstanceManager", cell: Cells.string("status", "instanceManagerName")),
                                 Cells.ageColumn]),
        ServedResource(type: .longhornNodes, singular: "node", shortNames: ["lhn"], categories: ["longhorn"], isCustom: true,
                       columns: [Cells.nameColumn("Node"),
                                 TableColumn(name: "Ready", cell: Cells.conditionStatus("Ready")),
                                 TableColumn(name: "AllowScheduling", cell: Cells.string("spec", "allowScheduling")),
                                 TableColumn(name: "Schedulable", cell: Cells.conditionStatus("Schedulable")),
                                 Cells.ageColumn]),
        ServedResource(type: .longhornSettings, singular: "setting", shortNames: ["lhs"], categories: ["longhorn"], isCustom: true,
                       columns: [Cells.nameColumn("Setting"),
                                 TableColumn(name: "Value", cell: Cells.string("value")),
                                 TableColumn(name: "Applied", cell: Cells.string("status", "applied")),
                                 Cells.ageColumn]),
        ServedResource(type: .longhornSnapshots, singular: "snapshot", shortNames: ["lhsnap"], categories: ["longhorn"], isCustom: true,
                       columns: [Cells.nameColumn("Snapshot"),
                                 TableColumn(name: "Volume", cell: Cells.string("spec", "volume")),
                                 TableColumn(name: "CreationTime", cell: Cells.string("status", "creationTime")),
                                 TableColumn(name: "ReadyToUse", cell: Cells.string("status", "readyToUse")),
                                 TableColumn(name: "Size", cell: Cells.string("status", "size")),
                                 Cells.ageColumn]),
        ServedResource(type: .longhornInstanceManagers, singular: "instancemanager", shortNames: ["lhim"], categories: ["longhorn"],
                       isCustom: true,
                       columns: [Cells.nameColumn("InstanceManager"),
                                 TableColumn(name: "Data Engine", cell: Cells.string("spec", "dataEngine")),
                                 TableColumn(name: "State", cell: Cells.string("status", "currentState")),
                                 TableColumn(name: "Type", cell: Cells.string("spec", "type")),
                                 TableColumn(name: "Node", cell: Cells.string("spec", "nodeID")),
                                 Cells.ageColumn]),
        ServedResource(type: .fluxKustomizations, singular: "kustomization", shortNames: ["ks"], isCustom: true,
                       columns: FluxColumns.columns(withURL: false)),
        ServedResource(type: .fluxHelmReleases, singular: "helmrelease", shortNames: ["hr"], isCustom: true,
                       columns: FluxColumns.columns(withURL: false)),
        ServedResource(type: .fluxGitRepositories, singular: "gitrepository", shortNames: ["gitrepo"], isCustom: true,
                       columns: FluxColumns.columns(withURL: true)),
    ]

    static let byPath: [String: ServedResource] = Dictionary(
        uniqueKeysWithValues: all.map { ("\($0.type.groupVersionPath)/\($0.type.plural)", $0) })

    static func lookup(groupVersionPath: String, plural: String) -> ServedResource? {
        byPath["\(groupVersionPath)/\(plural)"]
    }
}

enum FluxColumns {
    static func columns(withURL: Bool) -> [TableColumn] {
        var columns = [Cells.nameColumn("")]
        if withURL { columns.append(TableColumn(name: "URL", cell: Cells.string("spec", "url"))) }
        columns += [Cells.ageColumn,
                    TableColumn(name: "Ready", cell: Cells.conditionStatus("Ready")),
                    TableColumn(name: "Status", cell: Cells.conditionMessage("Ready"))]
        return columns
    }
}

enum NodeColumns {
    static let columns: [TableColumn] = [
        Cells.nameColumn("Node"),
        TableColumn(name: "Status", description: "The status of the node", cell: { node, _ in
            let view = Node(json: node)
            var status = view.readyStatus == "True" ? "Ready" : (view.readyStatus == "Unknown" && view.condition("Ready") == nil ? "Unknown" : "NotReady")
            if view.unschedulable { status += ",SchedulingDisabled" }
            return .string(status)
        }),
        TableColumn(name: "Roles", description: "The roles of the node", cell: { node, _ in
            let roles = Node(json: node).roles
            return .string(roles.isEmpty ? "<none>" : roles.joined(separator: ","))
        }),
        Cells.ageColumn,
        TableColumn(name: "Version", description: "Kubelet Version reported by the node.", cell: Cells.string("status", "nodeInfo", "kubeletVersion")),
        TableColumn(name: "Internal-IP", priority: 1, cell: { node, _ in .string(Node(json: node).internalIP ?? "<none>") }),
        TableColumn(name: "External-IP", priority: 1, cell: { node, _ in
            let external = node[path: "status", "addresses"]?.array?.first { $0["type"]?.string == "ExternalIP" }
            return external?["address"] ?? "<none>"
        }),
        TableColumn(name: "OS-Image", priority: 1, cell: Cells.string("status", "nodeInfo", "osImage")),
        TableColumn(name: "Kernel-Version", priority: 1, cell: Cells.string("status", "nodeInfo", "kernelVersion")),
        TableColumn(name: "Container-Runtime", priority: 1, cell: Cells.string("status", "nodeInfo", "containerRuntimeVersion")),
    ]
}

enum PodColumns {
    static let columns: [TableColumn] = [
        Cells.nameColumn("Pod"),
        TableColumn(name: "Ready", description: "The aggregate readiness state of this pod for accepting traffic.", cell: { pod, _ in
            let containers = pod[path: "spec", "containers"]?.array?.count ?? 0
            let ready = (pod[path: "status", "containerStatuses"]?.array ?? []).filter { $0["ready"]?.bool == true }.count
            return .string("\(ready)/\(containers)")
        }),
        TableColumn(name: "Status", description: "The aggregate status of the containers in this pod.", cell: { pod, _ in
            if pod[path: "metadata", "deletionTimestamp"] != nil { return "Terminating" }
            return pod[path: "status", "phase"] ?? "Pending"
        }),
        TableColumn(name: "Restarts", type: "string", cell: { pod, _ in
            let restarts = (pod[path: "status", "containerStatuses"]?.array ?? []).reduce(Int64(0)) { $0 + ($1["restartCount"]?.int ?? 0) }
            return .string(String(restarts))
        }),
        Cells.ageColumn,
        TableColumn(name: "IP", priority: 1, cell: { pod, _ in pod[path: "status", "podIP"] ?? "<none>" }),
        TableColumn(name: "Node", priority: 1, cell: { pod, _ in pod[path: "spec", "nodeName"] ?? "<none>" }),
        TableColumn(name: "Nominated Node", priority: 1, cell: { _, _ in "<none>" }),
        TableColumn(name: "Readiness Gates", priority: 1, cell: { _, _ in "<none>" }),
    ]
}

enum WorkloadColumns {
    static let deployment: [TableColumn] = [
        Cells.nameColumn("Deployment"),
        TableColumn(name: "Ready", cell: { d, _ in
            .string("\(d[path: "status", "readyReplicas"]?.int ?? 0)/\(d[path: "spec", "replicas"]?.int ?? 1)")
        }),
        TableColumn(name: "Up-to-date", type: "integer", cell: Cells.integer("status", "updatedReplicas")),
        TableColumn(name: "Available", type: "integer", cell: Cells.integer("status", "availableReplicas")),
        Cells.ageColumn,
        TableColumn(name: "Containers", priority: 1, cell: containerNames),
        TableColumn(name: "Images", priority: 1, cell: containerImages),
        TableColumn(name: "Selector", priority: 1, cell: { d, _ in .string(LabelSelector(d[path: "spec", "selector"] ?? .null).description) }),
    ]

    static let replicaSet: [TableColumn] = [
        Cells.nameColumn("ReplicaSet"),
        TableColumn(name: "Desired", type: "integer", cell: Cells.integer("spec", "replicas")),
        TableColumn(name: "Current", type: "integer", cell: Cells.integer("status", "replicas")),
        TableColumn(name: "Ready", type: "integer", cell: Cells.integer("status", "readyReplicas")),
        Cells.ageColumn,
    ]

    static let daemonSet: [TableColumn] = [
        Cells.nameColumn("DaemonSet"),
        TableColumn(name: "Desired", type: "integer", cell: Cells.integer("status", "desiredNumberScheduled")),
        TableColumn(name: "Current", type: "integer", cell: Cells.integer("status", "currentNumberScheduled")),
        TableColumn(name: "Ready", type: "integer", cell: Cells.integer("status", "numberReady")),
        TableColumn(name: "Up-to-date", type: "integer", cell: Cells.integer("status", "updatedNumberScheduled")),
        TableColumn(name: "Available", type: "integer", cell: Cells.integer("status", "numberAvailable")),
        TableColumn(name: "Node Selector", cell: { d, _ in
            let selector = d[path: "spec", "template", "spec", "nodeSelector"]?.stringMap ?? [:]
            return .string(selector.isEmpty ? "<none>" : selector.keys.sorted().map { "\($0)=\(selector[$0]!)" }.joined(separator: ","))
        }),
        Cells.ageColumn,
        TableColumn(name: "Containers", priority: 1, cell: containerNames),
        TableColumn(name: "Images", priority: 1, cell: containerImages),
    ]

    static let statefulSet: [TableColumn] = [
        Cells.nameColumn("StatefulSet"),
        TableColumn(name: "Ready", cell: { s, _ in
            .string("\(s[path: "status", "readyReplicas"]?.int ?? 0)/\(s[path: "spec", "replicas"]?.int ?? 1)")
        }),
        Cells.ageColumn,
        TableColumn(name: "Containers", priority: 1, cell: containerNames),
        TableColumn(name: "Images", priority: 1, cell: containerImages),
    ]

    static let podDisruptionBudget: [TableColumn] = [
        Cells.nameColumn("PodDisruptionBudget"),
        TableColumn(name: "Min Available", cell: { p, _ in intOrString(p[path: "spec", "minAvailable"]) }),
        TableColumn(name: "Max Unavailable", cell: { p, _ in intOrString(p[path: "spec", "maxUnavailable"]) }),
        TableColumn(name: "Allowed Disruptions", type: "integer", cell: Cells.integer("status", "disruptionsAllowed")),
        Cells.ageColumn,
    ]

    static func intOrString(_ value: JSON?) -> JSON {
        switch value {
        case .int(let i)?: .string(String(i))
        case .string(let s)?: .string(s)
        default: "N/A"
        }
    }

    static let containerNames: @Sendable (JSON, Double) -> JSON = { d, _ in
        .string((d[path: "spec", "template", "spec", "containers"]?.array ?? []).compactMap { $0["name"]?.string }.joined(separator: ","))
    }

    static let containerImages: @Sendable (JSON, Double) -> JSON = { d, _ in
        .string((d[path: "spec", "template", "spec", "containers"]?.array ?? []).compactMap { $0["image"]?.string }.joined(separator: ","))
    }
}

/// `kubectl get services`' columns, as the apiserver's printer declares them
/// (https://github.com/kubernetes/kubernetes/blob/v1.32.0/pkg/printers/internalversion/printers.go, `serviceColumnDefinitions`).
enum ServiceColumns {
    static let columns: [TableColumn] = [
        Cells.nameColumn("Service"),
        TableColumn(name: "Type", description: "The type of the service.", cell: Cells.string("spec", "type")),
        TableColumn(name: "Cluster-IP", description: "The IP address of the service.", cell: Cells.string("spec", "clusterIP")),
        TableColumn(name: "External-IP", description: "The external IPs of the service.", cell: { object, _ in
            let external = object[path: "spec", "externalIPs"]?.array?.compactMap(\.string) ?? []
            return .string(external.isEmpty ? "<none>" : external.joined(separator: ","))
        }),
        TableColumn(name: "Port(s)", description: "The ports of the service.", cell: { object, _ in
            let ports = (object[path: "spec", "ports"]?.array ?? []).map { port in
                "\(port["port"]?.int ?? 0)/\(port["protocol"]?.string ?? "TCP")"
            }
            return .string(ports.isEmpty ? "<none>" : ports.joined(separator: ","))
        }),
        Cells.ageColumn,
        TableColumn(name: "Selector", description: "The label selector of the service.", priority: 1, cell: { object, _ in
            let selector = object[path: "spec", "selector"]?.object?.compactMapValues(\.string) ?? [:]
            return .string(selector.isEmpty ? "<none>" : selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))
        }),
    ]
}
