import UpkeepKube

/// The legacy discovery documents (`/api`, `/apis`, `/apis/<group>/<version>`) kubectl reads to
/// map `kubectl get volumes.longhorn.io` or `kubectl patch kustomization` to URLs. Requests for
/// aggregated discovery are answered in this legacy form, which clients accept as a fallback.
enum Discovery {
    static func groupVersions() -> [(group: String, version: String)] {
        var seen: [String] = []
        var out: [(String, String)] = []
        for resource in ServedResource.all where !resource.type.group.isEmpty {
            let key = resource.type.apiVersion
            if !seen.contains(key) {
                seen.append(key)
                out.append((resource.type.group, resource.type.version))
            }
        }
        return out
    }

    static func groupEntry(_ group: String, _ version: String) -> JSON {
        let groupVersion: JSON = ["groupVersion": .string("\(group)/\(version)"), "version": .string(version)]
        return ["name": .string(group), "versions": [groupVersion], "preferredVersion": groupVersion]
    }

    static func groupList() -> JSON {
        ["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(groupVersions().map { groupEntry($0.group, $0.version) })]
    }

    static func group(_ name: String) -> JSON? {
        guard let entry = groupVersions().first(where: { $0.group == name }) else { return nil }
        var group = groupEntry(entry.group, entry.version)
        group["kind"] = "APIGroup"
        group["apiVersion"] = "v1"
        return group
    }

    static func servesGroupVersion(_ path: String) -> Bool {
        ServedResource.all.contains { $0.type.groupVersionPath == path }
    }

    static func resourceList(_ groupVersionPath: String) -> JSON {
        var resources: [JSON] = []
        var groupVersion = ""
        for served in ServedResource.all where served.type.groupVersionPath == groupVersionPath {
            groupVersion = served.type.apiVersion
            var entry: JSON = ["name": .string(served.type.plural), "singularName": .string(served.singular),
                               "namespaced": .bool(served.type.namespaced), "kind": .string(served.type.kind),
                               "verbs": .array(served.verbs.map { .string($0) }),
                               "storageVersionHash": .string(StableHash.hex("svh/\(served.type.qualifiedName)", length: 11))]
            if !served.shortNames.isEmpty { entry["shortNames"] = .array(served.shortNames.map { .string($0) }) }
            if !served.categories.isEmpty { entry["categories"] = .array(served.categories.map { .string($0) }) }
            resources.append(entry)
            for sub in served.subresources {
                var subEntry: JSON = ["name": .string("\(served.type.plural)/\(sub)"), "singularName": "",
                                      "namespaced": .bool(served.type.namespaced), "kind": .string(served.type.kind),
                                      "verbs": ["get", "patch", "update"]]
                if sub == "eviction" {
                    subEntry["group"] = "policy"
                    subEntry["version"] = "v1"
                    subEntry["kind"] = "Eviction"
                    subEntry["verbs"] = ["create"]
                } else if sub == "scale" {
                    subEntry["group"] = "autoscaling"
                    subEntry["version"] = "v1"
                    subEntry["kind"] = "Scale"
                }
                resources.append(subEntry)
            }
        }
        return ["kind": "APIResourceList", "apiVersion": "v1", "groupVersion": .string(groupVersion), "resources": .array(resources)]
    }
}
