import UpkeepKube

/// The objects a fresh sandbox cluster starts with: what a k3s cluster running Longhorn and
/// Flux holds right after installation, plus one demo application with a disruption budget.
enum Seed {
    static func containerdVersion(for k3sVersion: String) -> String {
        let minor = k3sVersion.split(separator: ".").dropFirst().first.flatMap { Int($0) } ?? 30
        switch minor {
        case ...28: return "containerd://1.7.17-k3s1"
        case 29: return "containerd://1.7.21-k3s2"
        case 30: return "containerd://1.7.22-k3s1"
        default: return "containerd://1.7.23-k3s2"
        }
    }

    static func container(_ name: String, _ image: String) -> JSON {
        ["name": .string(name), "image": .string(image), "imagePullPolicy": "IfNotPresent"]
    }

    static func podTemplate(labels: [String: String], containers: [JSON], emptyDir: Bool = false,
                            nodeSelector: [String: String]? = nil, hostNetwork: Bool = false) -> JSON
    {
        var spec: JSON = ["containers": .array(containers), "terminationGracePeriodSeconds": 30]
        if emptyDir { spec["volumes"] = [["name": "tmp-dir", "emptyDir": [:]]] }
        if let nodeSelector { spec["nodeSelector"] = .object(nodeSelector.mapValues { .string($0) }) }
        if hostNetwork { spec["hostNetwork"] = true }
        return ["metadata": ["labels": .object(labels.mapValues { .string($0) })], "spec": spec]
    }

    static func deployment(_ namespace: String, _ name: String, replicas: Int64, image: String, emptyDir: Bool = false,
                           labels extra: [String: String] = [:]) -> JSON
    {
        let labels = ["app": name].merging(extra) { _, new in new }
        return ["metadata": ["name": .string(name), "namespace": .string(namespace), "labels": .object(labels.mapValues { .string($0) })],
                "spec": ["replicas": .int(replicas), "selector": ["matchLabels": ["app": .string(name)]],
                         "template": podTemplate(labels: labels, containers: [container(name, image)], emptyDir: emptyDir)]]
    }

    static func daemonSet(_ namespace: String, _ name: String, image: String, hostNetwork: Bool = false) -> JSON {
        ["metadata": ["name": .string(name), "namespace": .string(namespace), "labels": ["app": .string(name)]],
         "spec": ["selector": ["matchLabels": ["app": .string(name)]],
                  "template": podTemplate(labels: ["app": name], containers: [container(name, image)], hostNetwork: hostNetwork)]]
    }

    static func crd(group: String, plural: String, kind: String, version: String, labels: [String: String]) -> JSON {
        ["metadata": ["name": .string("\(plural).\(group)"), "labels": .object(labels.mapValues { .string($0) })],
         "spec": ["group": .string(group), "names": ["plural": .string(plural), "kind": .string(kind)], "scope": "Namespaced",
                  "versions": [["name": .string(version), "served": true, "storage": true]]],
         "status": ["conditions": [["type": "Established", "status": "True"]]]]
    }
}

extension ClusterModel {
    mutating func seed() {
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease", "longhorn-system", "flux-system"] {
            _ = store.create(.namespaces, ["metadata": ["name": .string(namespace), "labels": ["kubernetes.io/metadata.name": .string(namespace)]],
                                           "spec": ["finalizers": ["kubernetes"]], "status": ["phase": "Active"]], now: now)
        }
        for (index, name) in spec.nodeNames.enumerated() { seedNode(name, index: index, server: index < spec.servers) }
        if let twin = spec.twin {
            seedTwin(twin)
        } else {
            seedWorkloads()
            seedLonghorn()
        }
        seedFlux()
    }

    mutating func seedNode(_ name: String, index: Int, server: Bool) {
        let address = spec.address(of: name)
        var labels: JSON = ["beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "k3s", "beta.kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": .string(name), "kubernetes.io/os": "linux",
                            "node.kubernetes.io/instance-type": "k3s"]
        if server {
            labels["node-role.kubernetes.io/control-plane"] = "true"
            labels["node-role.kubernetes.io/master"] = "true"
            // Only servers with embedded etcd carry the etcd role; a single SQLite server has none
            // (https://docs.k3s.io/datastore/ha-embedded).
            if spec.servers > 1 { labels["node-role.kubernetes.io/etcd"] = "true" }
        }
        let version = spec.version(of: name)
        _ = store.create(.nodes, [
            "metadata": ["name": .string(name), "labels": labels,
                         "annotations": ["k3s.io/internal-ip": .string(address), "k3s.io/hostname": .string(name),
                                         "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"]],
            "spec": ["podCIDR": .string("10.42.\(index).0/24"), "podCIDRs": [.string("10.42.\(index).0/24")], "providerID": .string("k3s://\(name)")],
            "status": [
                "addresses": [["type": "InternalIP", "address": .string(address)], ["type": "Hostname", "address": .string(name)]],
                "capacity": ["cpu": "2", "memory": "4005848Ki", "pods": "110", "ephemeral-storage": "41152736Ki"],
                "allocatable": ["cpu": "2", "memory": "4005848Ki", "pods": "110", "ephemeral-storage": "40033320023"],
                "daemonEndpoints": ["kubeletEndpoint": ["Port": 10250]],
                "nodeInfo": ["architecture": "amd64", "bootID": .string(ObjectStore.uid(StableHash.fnv1a("boot/\(name)"))),
                             "containerRuntimeVersion": .string(Seed.containerdVersion(for: version)), "kernelVersion": "6.1.0-26-amd64",
                             "kubeProxyVersion": .string(version), "kubeletVersion": .string(version),
                             "machineID": .string(StableHash.hex("machine/\(name)", length: 16) + StableHash.hex("machine2/\(name)", length: 16)),
                             "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "systemUUID": .string(ObjectStore.uid(StableHash.fnv1a("system/\(name)")))],
                "conditions": [["type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                "message": "Kubelet never posted node status.", "lastTransitionTime": .string(KubeTime.format(now))]],
            ],
        ], now: now)
    }

    private mutating func seedWorkloads() {
        let deployments: [JSON] = [
            Seed.deployment("kube-system", "coredns", replicas: 1, image: "rancher/mirrored-coredns-coredns:1.11.3", labels: ["k8s-app": "kube-dns"]),
            Seed.deployment("kube-system", "local-path-provisioner", replicas: 1, image: "rancher/local-path-provisioner:v0.0.30"),
            Seed.deployment("kube-system", "metrics-server", replicas: 1, image: "rancher/mirrored-metrics-server:v0.7.2", emptyDir: true),
            Seed.deployment("kube-system", "traefik", replicas: 1, image: "rancher/mirrored-library-traefik:2.11.10"),
            Seed.deployment("longhorn-system", "longhorn-ui", replicas: 2, image: "longhornio/longhorn-ui:\(spec.longhornVersion)"),
            Seed.deployment("longhorn-system", "longhorn-driver-deployer", replicas: 1, image: "longhornio/longhorn-manager:\(spec.longhornVersion)"),
            Seed.deployment("default", "web", replicas: 2, image: "nginx:1.27"),
        ] + FluxManifests.images(version: spec.fluxVersion).sorted { $0.key < $1.key }.map { name, image in
            Seed.deployment(FluxManifests.namespace, name, replicas: 1, image: image, emptyDir: true,
                            labels: FluxManifests.labels(version: spec.fluxVersion).merging(["app.kubernetes.io/component": name]) { $1 })
        }
        for deployment in deployments { _ = store.create(.deployments, deployment, now: now) }
        seedServices()
        let daemonSets: [JSON] = [
            Seed.daemonSet("kube-system", "svclb-traefik-\(StableHash.hex("svclb", length: 8))", image: "rancher/klipper-lb:v0.4.9"),
            Seed.daemonSet("longhorn-system", "longhorn-manager", image: "longhornio/longhorn-manager:\(spec.longhornVersion)"),
            Seed.daemonSet("longhorn-system", "longhorn-csi-plugin", image: "longhornio/longhorn-manager:\(spec.longhornVersion)"),
            Seed.daemonSet("longhorn-system", "engine-image-ei-\(StableHash.hex("ei", length: 8))",
                           image: "longhornio/longhorn-engine:\(spec.longhornVersion)"),
        ]
        for daemonSet in daemonSets { _ = store.create(.daemonSets, daemonSet, now: now) }
        _ = store.create(.podDisruptionBudgets, [
            "metadata": ["name": "web", "namespace": "default"],
            "spec": ["minAvailable": 1, "selector": ["matchLabels": ["app": "web"]]],
        ], now: now)
    }

    /// The API's own Service, which the apiserver keeps at the first address of the service
    /// range, and CoreDNS's, at k3s's `--cluster-dns` (k3s's defaults: service CIDR
    /// 10.43.0.0/16, cluster DNS 10.43.0.10, https://docs.k3s.io/cli/server#networking; the
    /// Service as k3s's manifests/coredns.yaml deploys it,
    /// https://github.com/k3s-io/k3s/blob/master/manifests/coredns.yaml).
    mutating func seedServices() {
        func port(_ name: String, _ number: Int64, _ proto: String, target: JSON) -> JSON {
            ["name": .string(name), "port": .int(number), "protocol": .string(proto), "targetPort": target]
        }
        func spec(clusterIP: String, ports: [JSON], selector: [String: String]?) -> JSON {
            var spec: JSON = ["type": "ClusterIP", "clusterIP": .string(clusterIP), "clusterIPs": [.string(clusterIP)], "ports": .array(ports),
                              "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"]
            if let selector { spec["selector"] = .object(selector.mapValues { .string($0) }) }
            return spec
        }
        _ = store.create(.services, [
            "metadata": ["name": "kubernetes", "namespace": "default", "labels": ["component": "apiserver", "provider": "kubernetes"]],
            "spec": spec(clusterIP: Self.apiServiceIP, ports: [port("https", 443, "TCP", target: 6443)], selector: nil),
            "status": ["loadBalancer": [:]],
        ], now: now)
        _ = store.create(.services, [
            "metadata": ["name": "kube-dns", "namespace": "kube-system",
                         "labels": ["k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"],
                         "annotations": ["prometheus.io/port": "9153", "prometheus.io/scrape": "true"]],
            "spec": spec(clusterIP: Self.clusterDNSIP, ports: [port("dns", 53, "UDP", target: 53), port("dns-tcp", 53, "TCP", target: 53),
                                                                port("metrics", 9153, "TCP", target: 9153)],
                         selector: ["k8s-app": "kube-dns"]),
            "status": ["loadBalancer": [:]],
        ], now: now)
    }

    private mutating func seedLonghorn() {
        seedLonghornSettings([:])
        let nodes = spec.nodeNames
        guard !nodes.isEmpty else { return }
        for index in 0..<spec.volumes {
            let name = "pvc-" + ObjectStore.uid(StableHash.fnv1a("volume/\(index)"))
            let placement = (0..<spec.replicas).map { nodes[(index + $0 * max(1, nodes.count / max(1, spec.replicas))) % nodes.count] }
            let distinct = Array(uniqueTopped(placement, fallback: nodes))
            seedLonghornVolume(name, replicas: spec.replicas, size: String((index % 4 + 1) * 1_073_741_824),
                               attachedTo: index % 3 != 2 ? distinct[0] : nil, claim: "data-\(index)")
            for node in distinct { createReplica(volume: name, node: node, healthy: true) }
        }
    }

    /// Longhorn's CRDs and settings: the seed's defaults, then `values` over them.
    mutating func seedLonghornSettings(_ values: [String: String]) {
        let version = spec.longhornVersion
        let crdLabels = ["app.kubernetes.io/name": "longhorn", "app.kubernetes.io/instance": "longhorn", "app.kubernetes.io/version": version,
                         "longhorn-manager": ""]
        for (plural, kind) in [("volumes", "Volume"), ("replicas", "Replica"), ("nodes", "Node"), ("settings", "Setting"),
                               ("snapshots", "Snapshot"), ("instancemanagers", "InstanceManager")]
        {
            _ = store.create(.customResourceDefinitions, Seed.crd(group: "longhorn.io", plural: plural, kind: kind, version: "v1beta2",
                                                                 labels: crdLabels), now: now)
        }
        let defaults: [(String, String)] = [
            ("current-longhorn-version", version), ("node-drain-policy", "block-if-contains-last-replica"),
            ("replica-replenishment-wait-interval", "600"), ("default-replica-count", String(spec.replicas)),
            ("concurrent-automatic-engine-upgrade-per-node-limit", "0"), ("default-engine-image", Self.engineImage(version)),
        ]
        let settings = defaults.map { ($0.0, values[$0.0] ?? $0.1) }
            + values.filter { value in !defaults.contains { $0.0 == value.key } }.sorted { $0.key < $1.key }
        for (name, value) in settings {
            _ = store.create(.longhornSettings, ["metadata": ["name": .string(name), "namespace": .string(Self.longhornNamespace)],
                                                 "value": .string(value), "status": ["applied": true]], now: now)
        }
    }

    /// A volume, attached to `attachedTo` (the model attaches it once that node is up) or detached.
    mutating func seedLonghornVolume(_ name: String, replicas: Int, size: String, attachedTo: String?, claim: String) {
        let image = Self.engineImage(spec.longhornVersion)
        _ = store.create(.longhornVolumes, [
            "metadata": ["name": .string(name), "namespace": .string(Self.longhornNamespace), "labels": ["longhornvolume": .string(name)]],
            "spec": ["numberOfReplicas": .int(Int64(replicas)), "size": .string(size),
                     "dataEngine": "v1", "frontend": "blockdev", "nodeID": .string(attachedTo ?? ""),
                     "dataLocality": "disabled", "accessMode": "rwo", "image": .string(image)],
            "status": ["state": attachedTo != nil ? "attaching" : "detached", "robustness": "unknown", "currentNodeID": "",
                       "currentImage": .string(image),
                       "conditions": [["type": "Scheduled", "status": "True", "reason": "", "message": ""]],
                       "kubernetesStatus": ["pvName": .string(name), "pvcName": .string(claim), "namespace": "default"]],
        ], now: now)
    }

    private mutating func seedFlux() {
        let labels = ["app.kubernetes.io/part-of": "flux", "app.kubernetes.io/instance": "flux-system",
                      "app.kubernetes.io/version": spec.fluxVersion, "kustomize.toolkit.fluxcd.io/name": "flux-system",
                      "kustomize.toolkit.fluxcd.io/namespace": "flux-system"]
        _ = store.create(.customResourceDefinitions, Seed.crd(group: "source.toolkit.fluxcd.io", plural: "gitrepositories",
                                                             kind: "GitRepository", version: "v1", labels: labels), now: now)
        _ = store.create(.customResourceDefinitions, Seed.crd(group: "kustomize.toolkit.fluxcd.io", plural: "kustomizations",
                                                             kind: "Kustomization", version: "v1", labels: labels), now: now)
        _ = store.create(.customResourceDefinitions, Seed.crd(group: "helm.toolkit.fluxcd.io", plural: "helmreleases",
                                                             kind: "HelmRelease", version: "v2", labels: labels), now: now)
        _ = store.create(.fluxGitRepositories, [
            "metadata": ["name": "flux-system", "namespace": "flux-system"],
            "spec": ["interval": "1m0s", "ref": ["branch": "main"], "url": "ssh://git@git.sandbox.invalid/fleet.git",
                     "secretRef": ["name": "flux-system"], "timeout": "60s"],
        ], now: now)
        for (name, path) in [("flux-system", "./clusters/sandbox"), ("apps", "./apps/sandbox")] {
            _ = store.create(.fluxKustomizations, [
                "metadata": ["name": .string(name), "namespace": "flux-system"],
                "spec": ["interval": "10m0s", "path": .string(path), "prune": true,
                         "sourceRef": ["kind": "GitRepository", "name": "flux-system"]],
            ], now: now)
        }
        let chart = spec.longhornVersion.hasPrefix("v") ? String(spec.longhornVersion.dropFirst()) : spec.longhornVersion
        _ = store.create(.fluxHelmReleases, [
            "metadata": ["name": .string(Self.longhornRelease.name), "namespace": .string(Self.longhornRelease.namespace)],
            "spec": ["interval": "1h", "chart": ["spec": ["chart": "longhorn", "version": .string(chart),
                                                          "sourceRef": ["kind": "HelmRepository", "name": "longhorn", "namespace": "flux-system"]]]],
        ], now: now)
        _ = store.create(.fluxHelmReleases, [
            "metadata": ["name": "podinfo", "namespace": "default"],
            "spec": ["interval": "5m", "chart": ["spec": ["chart": "podinfo", "version": "6.7.1",
                                                          "sourceRef": ["kind": "HelmRepository", "name": "podinfo", "namespace": "flux-system"]]]],
        ], now: now)
    }
}

/// `items` without repeats, topped up from `fallback` to the same count.
func uniqueTopped(_ items: [String], fallback: [String]) -> [String] {
    var seen = Set<String>()
    var out: [String] = []
    for item in items where seen.insert(item).inserted { out.append(item) }
    for item in fallback where out.count < items.count && seen.insert(item).inserted { out.append(item) }
    return out
}
