import UpkeepKube

/// The OpenAPI v3 documents kubectl reads before it validates a manifest
/// (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3).
///
/// kubectl 1.32's `apply`/`create` (validation "Strict" by default) first asks whether the
/// server validates fields itself: it reads the index `GET /openapi/v3`, then the document of
/// the object's group-version at the index's `serverRelativeURL`, and looks there for the PATCH
/// operation of the object's kind (its `x-kubernetes-group-version-kind`) taking the
/// `fieldValidation` query parameter. When it finds one, it sends `fieldValidation=Strict` and
/// validates nothing on its side; otherwise it downloads the v2 document (protobuf) to validate
/// on its side (kubectl's `Validator` and `QueryParamVerifierV3`,
/// https://github.com/kubernetes/kubectl/blob/v0.32.0/pkg/cmd/util/factory_client_access.go,
/// https://github.com/kubernetes/cli-runtime/blob/v0.32.0/pkg/resource/query_param_verifier_v3.go).
///
/// So the sandbox serves the index and, per group-version, the PATCH operations of what it
/// serves; no schemas (kubectl then builds strategic merge patches from its own types, and
/// JSON merge patches for custom resources, as it does for any server without them). The
/// sandbox accepts `fieldValidation` and does not check fields; `/openapi/v2` stays unserved.
enum OpenAPI {
    /// `GET /openapi/v3`.
    static func index() -> JSON {
        var paths: [String: JSON] = [:]
        for groupVersion in groupVersionPaths() {
            paths[String(groupVersion.dropFirst())] = ["serverRelativeURL": .string("/openapi/v3\(groupVersion)?hash=\(hash(groupVersion))")]
        }
        return ["paths": .object(paths)]
    }

    /// `GET /openapi/v3/<api/v1 | apis/<group>/<version>>`, nil for a group-version not served.
    static func document(_ groupVersionPath: String) -> JSON? {
        let resources = ServedResource.all.filter { $0.type.groupVersionPath == groupVersionPath }
        guard !resources.isEmpty else { return nil }
        var paths: [String: JSON] = [:]
        for resource in resources {
            let type = resource.type
            let item = type.namespaced
                ? "\(groupVersionPath)/namespaces/{namespace}/\(type.plural)/{name}" : "\(groupVersionPath)/\(type.plural)/{name}"
            let gvk: JSON = ["group": .string(type.group), "version": .string(type.version), "kind": .string(type.kind)]
            paths[item] = [
                "patch": [
                    "operationId": .string("patch\(type.kind)"),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [
                        ["name": "dryRun", "in": "query", "schema": ["type": "string", "uniqueItems": true]],
                        ["name": "fieldManager", "in": "query", "schema": ["type": "string", "uniqueItems": true]],
                        ["name": "fieldValidation", "in": "query", "schema": ["type": "string", "uniqueItems": true],
                         "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."],
                    ],
                    "responses": ["200": ["description": "OK"]],
                ],
            ]
        }
        return ["openapi": "3.0.0", "info": ["title": "Kubernetes", "version": "unversioned"], "paths": .object(paths)]
    }

    static func groupVersionPaths() -> [String] {
        var seen: [String] = []
        for resource in ServedResource.all where !seen.contains(resource.type.groupVersionPath) {
            seen.append(resource.type.groupVersionPath)
        }
        return seen
    }

    /// A stable hash of the document (kubectl caches documents by it).
    static func hash(_ groupVersionPath: String) -> String {
        let document = self.document(groupVersionPath) ?? .null
        return StableHash.hex(String(decoding: document.serialized(), as: UTF8.self), length: 16).uppercased()
    }
}
