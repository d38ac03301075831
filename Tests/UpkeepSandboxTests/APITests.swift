import Testing
import UpkeepHTTPServer
import UpkeepKube
@testable import UpkeepSandbox

/// The simulated API's answers: discovery, Status bodies, patches, selectors, resourceVersion.
struct APITests {
    static func model() -> ClusterModel {
        var model = ClusterModel(spec: ClusterSpec(servers: 1, agents: 2, volumes: 2, replicas: 2), now: 1_800_000_000)
        model.kubeletStatuses(nodes: model.spec.nodeNames, ready: true, version: "v1.30.6+k3s1", now: 1_800_000_000)
        model.advance(to: 1_800_000_005)
        return model
    }

    static func request(_ model: inout ClusterModel, _ method: String, _ uri: String, _ body: String = "",
                        contentType: String = "application/json") -> (Int, JSON)
    {
        let response = model.handle(APIRequest(method: method, uri: uri, contentType: contentType, body: Array(body.utf8)), now: model.now)
        return (response.status, (try? JSON.parse(bytes: response.body)) ?? .null)
    }

    @Test func discoveryListsEvictionAsAPolicySubresourceAndTheCustomGroups() {
        var model = Self.model()
        let (_, core) = Self.request(&model, "GET", "/api/v1")
        let eviction = core["resources"]?.array?.first { $0["name"] == "pods/eviction" }
        #expect(eviction?["group"] == "policy" && eviction?["version"] == "v1" && eviction?["kind"] == "Eviction")
        let (_, groups) = Self.request(&model, "GET", "/apis")
        let names = Set((groups["groups"]?.array ?? []).compactMap { $0["name"]?.string })
        #expect(names.isSuperset(of: ["apps", "policy", "longhorn.io", "kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io",
                                      "source.toolkit.fluxcd.io", "apiextensions.k8s.io"]))
        let (status, _) = Self.request(&model, "GET", "/apis/nothing.example/v1")
        #expect(status == 404)
    }

    @Test func errorsAreKubernetesStatusBodies() {
        var model = Self.model()
        let (missing, notFound) = Self.request(&model, "GET", "/api/v1/nodes/nope")
        #expect(missing == 404)
        #expect(KubeAPIError(status: notFound, code: missing) == KubeAPIError.notFound("nodes", "nope"))
        let node = model.store.get(.nodes, nil, "agent-1")!
        var stale = node
        stale[path: "metadata", "resourceVersion"] = "1"
        stale[path: "metadata", "labels", "x"] = "y"
        let (conflict, body) = Self.request(&model, "PUT", "/api/v1/nodes/agent-1", stale.description)
        #expect(conflict == 409 && body["reason"] == "Conflict" && body["kind"] == "Status")
        let (exists, existsBody) = Self.request(&model, "POST", "/api/v1/namespaces", #"{"metadata":{"name":"default"}}"#)
        #expect(exists == 409 && existsBody["reason"] == "AlreadyExists")
        let (invalid, invalidBody) = Self.request(&model, "POST", "/api/v1/namespaces", #"{"metadata":{"name":"Bad_Name"}}"#)
        #expect(invalid == 422 && invalidBody["reason"] == "Invalid")
        let (noNamespace, _) = Self.request(&model, "POST", "/apis/apps/v1/namespaces/ghost/deployments", #"{"metadata":{"name":"a"}}"#)
        #expect(noNamespace == 404)
    }

    @Test func strategicMergePatchOfNodesAndResourceVersions() {
        var model = Self.model()
        let before = model.store.get(.nodes, nil, "agent-2")![path: "metadata", "resourceVersion"]?.string
        let (status, patched) = Self.request(&model, "PATCH", "/api/v1/nodes/agent-2",
                                             #"{"metadata":{"labels":{"upkeep.io/step":"drain"},"annotations":{"a":"b"}},"spec":{"unschedulable":true}}"#,
                                             contentType: "application/strategic-merge-patch+json")
        #expect(status == 200)
        #expect(patched[path: "metadata", "labels", "upkeep.io/step"] == "drain")
        #expect(patched[path: "metadata", "labels", "kubernetes.io/hostname"] == "agent-2", "other labels kept")
        #expect(patched[path: "spec", "unschedulable"] == true)
        #expect(patched[path: "metadata", "resourceVersion"]?.string != before)
        // A status patch merges conditions by type instead of replacing the list.
        let (_, withCondition) = Self.request(&model, "PATCH", "/api/v1/nodes/agent-2/status",
                                              #"{"status":{"conditions":[{"type":"UpkeepDrain","status":"True"}]}}"#,
                                              contentType: "application/strategic-merge-patch+json")
        let types = Set((withCondition[path: "status", "conditions"]?.array ?? []).compactMap { $0["type"]?.string })
        #expect(types == ["Ready", "UpkeepDrain"])
        // Status cannot be changed through the main resource.
        let (_, ignored) = Self.request(&model, "PATCH", "/api/v1/nodes/agent-2", #"{"status":{"phase":"x"}}"#,
                                        contentType: "application/merge-patch+json")
        #expect(ignored[path: "status", "phase"] == nil)
    }

    @Test func listsFilterByLabelAndFieldSelectorsAndPage() {
        var model = Self.model()
        let (_, onAgent) = Self.request(&model, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dagent-1")
        let items = onAgent["items"]?.array ?? []
        #expect(!items.isEmpty && items.allSatisfy { $0[path: "spec", "nodeName"] == "agent-1" })
        let (_, servers) = Self.request(&model, "GET", "/api/v1/nodes?labelSelector=node-role.kubernetes.io%2Fcontrol-plane%3Dtrue")
        #expect(servers["items"]?.array?.compactMap { $0[path: "metadata", "name"]?.string } == ["server-1"])
        let (_, page1) = Self.request(&model, "GET", "/api/v1/pods?limit=5")
        #expect(page1["items"]?.array?.count == 5)
        let token = page1[path: "metadata", "continue"]?.string ?? ""
        let (_, page2) = Self.request(&model, "GET", "/api/v1/pods?limit=1000&continue=\(token)")
        let (_, all) = Self.request(&model, "GET", "/api/v1/pods")
        #expect((page1["items"]?.array ?? []) + (page2["items"]?.array ?? []) == all["items"]?.array)
        let (bad, _) = Self.request(&model, "GET", "/api/v1/pods?labelSelector=a%20in%20b")
        #expect(bad == 400)
    }

    @Test func fluxVersionIsReadFromTheGitRepositoryCRDLabel() {
        var model = Self.model()
        let (_, crd) = Self.request(&model, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gitrepositories.source.toolkit.fluxcd.io")
        #expect(crd[path: "metadata", "labels", "app.kubernetes.io/version"] == "v2.4.0")
        let (_, setting) = Self.request(&model, "GET", "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/settings/current-longhorn-version")
        #expect(setting["value"] == "v1.7.2")
    }
}
