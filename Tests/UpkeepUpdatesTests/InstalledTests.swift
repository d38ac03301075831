import Testing
import UpkeepCore
import UpkeepKube
import UpkeepUpdates

@Suite("Reading installed versions from cluster objects")
struct InstalledTests {
    static func nodeObject(_ name: String, kubelet: String, server: Bool, arch: String = "amd64") -> Node {
        var labels: JSON = ["kubernetes.io/arch": .string(arch)]
        if server { labels["node-role.kubernetes.io/control-plane"] = "true" }
        return Node(json: ["metadata": ["name": .string(name), "labels": labels],
                           "status": ["nodeInfo": ["kubeletVersion": .string(kubelet), "architecture": .string(arch)],
                                      "conditions": [["type": "Ready", "status": "True"]]]])
    }

    static func deployment(_ name: String, image: String, labels: [String: String] = [:]) -> Deployment {
        Deployment(json: ["metadata": ["name": .string(name), "namespace": "flux-system", "labels": .object(labels.mapValues { .string($0) })],
                          "spec": ["template": ["spec": ["containers": [["name": "manager", "image": .string(image)]]]]]])
    }

    @Test("k3s per node, servers first, mixed versions kept, a non-k3s kubelet version kept as text")
    func k3sNodes() {
        let installed = InstalledReader.k3s(nodes: [
            Self.nodeObject("agent-1", kubelet: "v1.30.6+k3s1", server: false, arch: "arm64"),
            Self.nodeObject("server-1", kubelet: "v1.31.2+k3s1", server: true),
            Self.nodeObject("odd", kubelet: "v1.30.6-eks-1", server: false),
        ])
        #expect(installed.nodes.map(\.name) == ["server-1", "agent-1", "odd"])
        #expect(installed.nodes.map(\.role) == [.server, .agent, .agent])
        #expect(installed.versions == [version("v1.30.6+k3s1"), version("v1.31.2+k3s1")])
        #expect(installed.isMixed)
        #expect(installed.nodes[2].version == nil && installed.nodes[2].kubeletVersion == "v1.30.6-eks-1")
        #expect(installed.nodes[1].arch == "arm64")
    }

    @Test("Flux from the CRD label, bootstrapped or not")
    func fluxFromCRD() {
        let crd = CustomResourceDefinition(json: ["metadata": ["name": "gitrepositories.source.toolkit.fluxcd.io",
                                                               "labels": ["app.kubernetes.io/version": "v2.4.0",
                                                                          "kustomize.toolkit.fluxcd.io/name": "flux-system"]]])
        let flux = InstalledReader.flux(crd: crd, deployments: [])
        #expect(flux.state == .installed && flux.version == version("v2.4.0") && flux.exact && flux.bootstrapped == true)
        let plain = CustomResourceDefinition(json: ["metadata": ["name": "x", "labels": ["app.kubernetes.io/version": "v2.3.0"]]])
        #expect(InstalledReader.flux(crd: plain, deployments: []).bootstrapped == false)
    }

    @Test("Flux falls back to controller image tags, inferring the minor from source-controller")
    func fluxFromImages() {
        let deployments = [Self.deployment("source-controller", image: "ghcr.io/fluxcd/source-controller:v1.4.1"),
                           Self.deployment("kustomize-controller", image: "ghcr.io/fluxcd/kustomize-controller:v1.4.0@sha256:abc"),
                           Self.deployment("web", image: "nginx:1.27")]
        let flux = InstalledReader.flux(crd: nil, deployments: deployments)
        #expect(flux.state == .installed && flux.version == version("v2.4.0") && !flux.exact)
        #expect(flux.detail == "Flux v2.4.x inferred from source-controller v1.4.1; controllers: kustomize-controller v1.4.0, source-controller v1.4.1")
        #expect(InstalledReader.flux(crd: nil, deployments: [Self.deployment("web", image: "nginx:1.27")]).state == .notInstalled)
        let unknown = InstalledReader.flux(crd: nil, deployments: [Self.deployment("helm-controller", image: "ghcr.io/fluxcd/helm-controller:latest")])
        #expect(unknown.state == .unknown)
    }

    @Test("Longhorn from the setting, else the longhorn-manager image")
    func longhorn() {
        let setting = LonghornSetting(json: ["metadata": ["name": "current-longhorn-version"], "value": "v1.7.2"])
        #expect(InstalledReader.longhorn(setting: setting, workloads: []).version == version("v1.7.2"))
        let manager: JSON = ["spec": ["template": ["spec": ["containers": [["image": "longhornio/longhorn-manager:v1.8.1"]]]]]]
        let fallback = InstalledReader.longhorn(setting: nil, workloads: [manager])
        #expect(fallback.version == version("v1.8.1"))
        #expect(fallback.source == "longhorn-manager image tag (no setting current-longhorn-version)")
        let blank = LonghornSetting(json: ["metadata": ["name": "current-longhorn-version"], "value": ""])
        #expect(InstalledReader.longhorn(setting: blank, workloads: [manager]).version == version("v1.8.1"))
        #expect(InstalledReader.longhorn(setting: nil, workloads: []).state == .notInstalled)
    }
}
