import UpkeepHTTPServer
import UpkeepKube

/// One HTTP request to the simulated API, already read off the wire.
public typealias APIRequest = HTTPServerRequest

/// The simulated API's answer.
public typealias APIResponse = HTTPServerResponse

extension HTTPServerResponse {
    public static func json(_ value: JSON, status: Int = 200) -> APIResponse {
        APIResponse(status: status, body: value.serialized())
    }

    public static func error(_ error: KubeAPIError) -> APIResponse {
        APIResponse(status: error.code, body: error.status.serialized())
    }
}

/// Where a resource request points.
struct ResourceTarget {
    var resource: ServedResource
    var namespace: String?
    var name: String?
    var subresource: String?
}

extension ClusterModel {
    /// Answers one Kubernetes API request against the model. `now` advances the model's clock.
    public mutating func handle(_ request: APIRequest, now: Double) -> APIResponse {
        self.now = max(self.now, now)
        let segments = request.path.split(separator: "/").map(String.init)
        switch segments.first {
        case nil: return .json(["paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]])
        case "version": return .json(versionInfo())
        case "healthz", "livez", "readyz": return .text("ok")
        case "api":
            if segments.count == 1 {
                return .json(["kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": .string("\(spec.address(of: spec.serverNames[0])):6443")]]])
            }
            if segments.count == 2 {
                return segments[1] == "v1" ? .json(Discovery.resourceList("/api/v1")) : notFoundPath()
            }
            return resourceRequest(request, groupVersionPath: "/api/\(segments[1])", rest: Array(segments.dropFirst(2)))
        case "apis":
            switch segments.count {
            case 1: return .json(Discovery.groupList())
            case 2: return Discovery.group(segments[1]).map { .json($0) } ?? notFoundPath()
            case 3:
                let path = "/apis/\(segments[1])/\(segments[2])"
                return Discovery.servesGroupVersion(path) ? .json(Discovery.resourceList(path)) : notFoundPath()
            default:
                return resourceRequest(request, groupVersionPath: "/apis/\(segments[1])/\(segments[2])", rest: Array(segments.dropFirst(3)))
            }
        case "openapi" where segments.count >= 2 && segments[1] == "v3" && request.method == "GET":
            if segments.count == 2 { return .json(OpenAPI.index()) }
            return OpenAPI.document("/" + segments.dropFirst(2).joined(separator: "/")).map { .json($0) } ?? notFoundPath()
        case "sandbox":
            return sandboxRequest(request, rest: Array(segments.dropFirst()))
        default:
            return notFoundPath()
        }
    }

    /// How long a write of `request` stalls before it fails unapplied (`apiWriteStallSeconds`); nil: it does not.
    public func writeStallSeconds(_ request: APIRequest) -> Double? {
        guard !apiWriteStallSeconds.isEmpty, request.method != "GET", request.method != "HEAD" else { return nil }
        return Self.target(of: request).flatMap { apiWriteStallSeconds[$0.resource.type.plural] }
    }

    /// The resource a request under `/api` or `/apis` points at; nil for any other path.
    static func target(of request: APIRequest) -> ResourceTarget? {
        let segments = request.path.split(separator: "/").map(String.init)
        return switch segments.first {
        case "api" where segments.count > 2: Self.parseTarget(groupVersionPath: "/api/\(segments[1])", rest: Array(segments.dropFirst(2)))
        case "apis" where segments.count > 3:
            Self.parseTarget(groupVersionPath: "/apis/\(segments[1])/\(segments[2])", rest: Array(segments.dropFirst(3)))
        default: nil
        }
    }

    /// Whether `request` asks for a watch (`?watch=true` or `?watch=1`, a GET of a collection or,
    /// as the apiserver allows, of one object), which `SandboxCluster` serves from its `WatchCache`.
    static func isWatch(_ request: APIRequest) -> Bool {
        (request.query["watch"] == "true" || request.query["watch"] == "1") && request.method == "GET"
    }

    func notFoundPath() -> APIResponse {
        .error(KubeAPIError(code: 404, reason: "NotFound", message: "the server could not find the requested resource"))
    }

    /// The API server's version: what the first server's k3s runs.
    func versionInfo() -> JSON {
        let version = runtimes[spec.serverNames[0]]?.version ?? nodeObject(spec.serverNames[0])?.kubeletVersion ?? spec.k3sVersion
        let core = version.split(separator: "+").first.map(String.init) ?? version
        let numbers = core.dropFirst().split(separator: ".")
        return ["major": .string(numbers.first.map(String.init) ?? "1"), "minor": .string(numbers.dropFirst().first.map(String.init) ?? "0"),
                "gitVersion": .string(version), "gitCommit": .string(StableHash.hex("commit/\(version)", length: 16) + StableHash.hex("c2/\(version)", length: 16)),
                "gitTreeState": "clean", "buildDate": "2024-10-26T18:23:50Z", "goVersion": "go1.22.8", "compiler": "gc",
                "platform": "linux/amd64"]
    }

    mutating func resourceRequest(_ request: APIRequest, groupVersionPath: String, rest: [String]) -> APIResponse {
        guard let target = Self.parseTarget(groupVersionPath: groupVersionPath, rest: rest) else { return notFoundPath() }
        if Self.isWatch(request) {
            // Served by SandboxCluster, which holds the open watches; the model alone cannot stream.
            return .error(KubeAPIError(code: 405, reason: "MethodNotAllowed", message: "this model serves watches only through a SandboxCluster"))
        }
        let type = target.resource.type
        if type.namespaced, let namespace = target.namespace, store.get(.namespaces, nil, namespace) == nil,
           request.method != "GET" || target.name != nil
        {
            return .error(.notFound("namespaces", namespace))
        }
        switch (request.method, target.name, target.subresource) {
        case ("GET", nil, _):
            return list(request, target)
        case ("GET", let name?, let sub) where sub == nil || sub == "status":
            guard let object = store.get(type, target.namespace, name) else { return .error(.notFound(type.plural, name, group: type.group)) }
            return wantsTable(request) ? .json(table([object], target.resource, request, single: true)) : .json(object)
        case ("POST", nil, nil):
            return create(request, target)
        case ("POST", let name?, "eviction") where type == .pods:
            return evictionRequest(request, namespace: target.namespace ?? "default", name: name)
        case ("PUT", let name?, let sub) where sub == nil || sub == "status":
            return replace(request, target, name: name, status: sub == "status")
        case ("PATCH", let name?, let sub) where sub == nil || sub == "status":
            return patch(request, target, name: name, status: sub == "status")
        case ("DELETE", let name?, nil):
            return delete(request, target, name: name)
        default:
            return .error(KubeAPIError(code: 405, reason: "MethodNotAllowed",
                                       message: "the server does not allow this method on the requested resource"))
        }
    }

    static func parseTarget(groupVersionPath: String, rest: [String]) -> ResourceTarget? {
        if rest.count >= 3, rest[0] == "namespaces",
           let resource = ServedResource.lookup(groupVersionPath: groupVersionPath, plural: rest[2]), resource.type.namespaced
        {
            guard rest.count <= 5 else { return nil }
            return ResourceTarget(resource: resource, namespace: rest[1], name: rest.count > 3 ? rest[3] : nil,
                                  subresource: rest.count > 4 ? rest[4] : nil)
        }
        guard let first = rest.first, rest.count <= 3, let resource = ServedResource.lookup(groupVersionPath: groupVersionPath, plural: first)
        else { return nil }
        if resource.type.namespaced && rest.count > 1 { return nil }
        return ResourceTarget(resource: resource, namespace: nil, name: rest.count > 1 ? rest[1] : nil, subresource: rest.count > 2 ? rest[2] : nil)
    }

    func wantsTable(_ request: APIRequest) -> Bool {
        request.accept.contains("as=Table")
    }

    // MARK: - Verbs

    func list(_ request: APIRequest, _ target: ResourceTarget) -> APIResponse {
        let labelSelector: LabelSelector, fieldSelector: FieldSelector
        do {
            labelSelector = try LabelSelector.parse(request.query["labelSelector"] ?? "")
            fieldSelector = try FieldSelector.parse(request.query["fieldSelector"] ?? "")
        } catch {
            return .error(.badRequest(error.description))
        }
        var items = store.list(target.resource.type, namespace: target.namespace).filter {
            labelSelector.matches($0[path: "metadata", "labels"]?.stringMap ?? [:]) && fieldSelector.matches($0)
        }
        var continueToken: String?
        let offset = request.query["continue"].flatMap { Int($0) } ?? 0
        if offset > 0 { items = Array(items.dropFirst(offset)) }
        if let limit = request.query["limit"].flatMap(Int.init), limit > 0, items.count > limit {
            items = Array(items.prefix(limit))
            continueToken = String(offset + limit)
        }
        if wantsTable(request) {
            var result = table(items, target.resource, request, single: false)
            if let continueToken { result[path: "metadata", "continue"] = .string(continueToken) }
            return .json(result)
        }
        var metadata: JSON = ["resourceVersion": .string(String(store.revision))]
        if let continueToken { metadata["continue"] = .string(continueToken) }
        return .json(["kind": .string(target.resource.type.kind + "List"), "apiVersion": .string(target.resource.type.apiVersion),
                      "metadata": metadata, "items": .array(items)])
    }

    mutating func create(_ request: APIRequest, _ target: ResourceTarget) -> APIResponse {
        let type = target.resource.type
        var object: JSON
        switch Self.object(request) {
        case .success(let read): object = read
        case .failure(let error): return .error(error)
        }
        guard case .object = object else { return .error(.badRequest("the body must be a JSON object")) }
        if let kind = object["kind"]?.string, kind != type.kind {
            return .error(.badRequest("the kind \(kind) does not match the resource \(type.qualifiedName) (kind \(type.kind))"))
        }
        if type.namespaced {
            let bodyNamespace = object[path: "metadata", "namespace"]?.string
            if let bodyNamespace, let urlNamespace = target.namespace, bodyNamespace != urlNamespace {
                return .error(.badRequest("the namespace of the provided object does not match the namespace sent on the request"))
            }
            guard let namespace = target.namespace ?? bodyNamespace else { return .error(.badRequest("a namespace is required")) }
            object[path: "metadata", "namespace"] = .string(namespace)
        }
        var name = object[path: "metadata", "name"]?.string ?? ""
        if name.isEmpty, let generate = object[path: "metadata", "generateName"]?.string, !generate.isEmpty {
            name = generate + StableHash.suffix("\(generate)#\(store.revision)")
            object[path: "metadata", "name"] = .string(name)
        }
        guard Self.isValidName(name) else {
            return .error(.invalid(type.kind, name, "metadata.name: Invalid value: \"\(name)\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character", group: type.group))
        }
        guard let created = store.create(type, object, now: now) else {
            return .error(.alreadyExists(type.plural, name, group: type.group))
        }
        observeWrite(type, created)
        reconcile()
        return .json(store.get(type, target.namespace, name) ?? created, status: 201)
    }

    /// The object a create or replace sends: JSON, or protobuf for the kinds `ProtobufBody` reads.
    static func object(_ request: APIRequest) -> Result<JSON, KubeAPIError> {
        if request.contentType.hasPrefix(ProtobufBody.mediaType) {
            do { return .success(try ProtobufBody.decode(request.body)) } catch {
                return .failure(KubeAPIError(code: 415, reason: "UnsupportedMediaType", message: error.message))
            }
        }
        do { return .success(try JSON.parse(bytes: request.body)) } catch {
            return .failure(.badRequest("the body of the request could not be read as JSON: \(error)"))
        }
    }

    static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 253, let first = name.first, let last = name.last,
              first.isLetter || first.isNumber, last.isLetter || last.isNumber
        else { return false }
        return name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." }
    }

    /// PUT: optimistic concurrency on `resourceVersion` (a stale one is 409 Conflict, as the
    /// apiserver's GuaranteedUpdate answers; https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
    mutating func replace(_ request: APIRequest, _ target: ResourceTarget, name: String, status: Bool) -> APIResponse {
        let type = target.resource.type
        var object: JSON
        switch Self.object(request) {
        case .success(let read): object = read
        case .failure(let error): return .error(error)
        }
        let version = object[path: "metadata", "resourceVersion"]?.string ?? ""
        guard let current = store.get(type, target.namespace, name) else {
            if target.resource.isLeaseLike && version.isEmpty && !status && object[path: "metadata", "name"]?.string == name {
                return create(request, target)
            }
            return .error(.notFound(type.plural, name, group: type.group))
        }
        if target.resource.isLeaseLike && version.isEmpty {
            return .error(KubeAPIError(code: 422, reason: "Invalid",
                                       message: "\(type.plural).\(type.group) \"\(name)\" is invalid: metadata.resourceVersion: Invalid value: 0x0: "
                                           + "must be specified for an update",
                                       name: name, kind: type.plural, group: type.group,
                                       causes: [.init(reason: "FieldValueInvalid", message: "Invalid value: 0x0: must be specified for an update",
                                                      field: "metadata.resourceVersion")]))
        }
        if !version.isEmpty, version != current[path: "metadata", "resourceVersion"]?.string {
            return .error(.conflict(type.plural, name, group: type.group))
        }
        guard object[path: "metadata", "name"]?.string == name else {
            return .error(.badRequest("the name of the object (\(object[path: "metadata", "name"]?.string ?? "")) does not match the name on the URL (\(name))"))
        }
        object = Self.splitStatus(current: current, proposed: object, statusOnly: status, hasStatus: target.resource.hasStatus)
        object[path: "metadata", "namespace"] = current[path: "metadata", "namespace"]
        let stored = store.update(type, object)
        observeWrite(type, stored, statusOnly: status)
        reconcile()
        return .json(store.get(type, target.namespace, name) ?? stored)
    }

    mutating func patch(_ request: APIRequest, _ target: ResourceTarget, name: String, status: Bool) -> APIResponse {
        let type = target.resource.type
        guard let patchType = PatchType(contentType: request.contentType) else {
            return .error(KubeAPIError(code: 415, reason: "UnsupportedMediaType",
                                       message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"))
        }
        if patchType == .strategicMerge && target.resource.isCustom {
            return .error(KubeAPIError(code: 415, reason: "UnsupportedMediaType",
                                       message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"))
        }
        guard let current = store.get(type, target.namespace, name) else { return .error(.notFound(type.plural, name, group: type.group)) }
        let body: JSON
        do { body = try JSON.parse(bytes: request.body) } catch {
            return .error(.badRequest("the patch could not be read as JSON: \(error)"))
        }
        var patched: JSON
        do {
            switch patchType {
            case .merge: patched = Patch.merge(current, body)
            case .strategicMerge: patched = try Patch.strategicMerge(current, body)
            case .json: patched = try Patch.jsonPatch(current, body)
            }
        } catch {
            return .error(.invalid(type.kind, name, error.reason, group: type.group))
        }
        if let version = patched[path: "metadata", "resourceVersion"]?.string, !version.isEmpty,
           version != current[path: "metadata", "resourceVersion"]?.string
        {
            return .error(.conflict(type.plural, name, group: type.group))
        }
        guard patched[path: "metadata", "name"]?.string == name else {
            return .error(.invalid(type.kind, name, "metadata.name: Invalid value: the name cannot be changed", group: type.group))
        }
        patched = Self.splitStatus(current: current, proposed: patched, statusOnly: status, hasStatus: target.resource.hasStatus)
        patched[path: "metadata", "namespace"] = current[path: "metadata", "namespace"]
        if case .object = patched {} else { return .error(.badRequest("a patch must leave an object")) }
        let stored = store.update(type, patched)
        observeWrite(type, stored, statusOnly: status)
        reconcile()
        return .json(store.get(type, target.namespace, name) ?? stored)
    }

    /// Writes through the main resource cannot change status, and status writes change nothing else.
    static func splitStatus(current: JSON, proposed: JSON, statusOnly: Bool, hasStatus: Bool) -> JSON {
        guard hasStatus else { return proposed }
        if statusOnly {
            var result = current
            result["status"] = proposed["status"]
            return result
        }
        var result = proposed
        result["status"] = current["status"]
        return result
    }

    mutating func delete(_ request: APIRequest, _ target: ResourceTarget, name: String) -> APIResponse {
        let type = target.resource.type
        guard let current = store.get(type, target.namespace, name) else { return .error(.notFound(type.plural, name, group: type.group)) }
        let options = (try? JSON.parse(bytes: request.body)) ?? .null
        let grace = options["gracePeriodSeconds"]?.int ?? request.query["gracePeriodSeconds"].flatMap { Int64($0) }
        if type == .pods {
            terminate(current, graceSeconds: grace)
            record("PodDeleted", "\(target.namespace ?? "")/\(name)", "deleted through the API")
            reconcile()
            return .json(store.get(type, target.namespace, name) ?? current)
        }
        store.delete(type, target.namespace, name)
        reconcile()
        return .json(current)
    }

    mutating func evictionRequest(_ request: APIRequest, namespace: String, name: String) -> APIResponse {
        let body = (try? JSON.parse(bytes: request.body)) ?? .null
        if let bodyName = body[path: "metadata", "name"]?.string, bodyName != name {
            return .error(.badRequest("name in URL does not match name in Eviction object"))
        }
        let grace = body[path: "deleteOptions", "gracePeriodSeconds"]?.int
        switch evict(namespace: namespace, name: name, graceSeconds: grace) {
        case .success:
            return .json(["kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Success", "code": 201], status: 201)
        case .failure(let error):
            return .error(error)
        }
    }

    /// What the kubelet's own writes tell the model: node status and lease renewals.
    mutating func observeWrite(_ type: ResourceType, _ object: JSON, statusOnly: Bool = false) {
        if type == .leases, object[path: "metadata", "namespace"]?.string == "kube-node-lease",
           let node = object[path: "metadata", "name"]?.string, nodeObject(node) != nil
        {
            kubeletHeartbeat(node: node, now: now)
        }
        if type == .nodes, statusOnly, let name = object[path: "metadata", "name"]?.string,
           let reported = (object[path: "status", "conditions"]?.array ?? []).first(where: { $0["type"]?.string == "Ready" }),
           reported["reason"]?.string == "KubeletReady" || reported["reason"]?.string == "KubeletNotReady"
        {
            kubeletStatus(node: name, ready: reported["status"]?.string == "True",
                          version: object[path: "status", "nodeInfo", "kubeletVersion"]?.string, now: now)
        }
    }

    // MARK: - Tables

    func table(_ objects: [JSON], _ resource: ServedResource, _ request: APIRequest, single: Bool) -> JSON {
        Self.table(objects, resource, includeObject: request.query["includeObject"] ?? "Metadata", now: now, revision: String(store.revision))
    }

    /// `objects` as the Table kubectl's server-side printing asks for (`Accept: …;as=Table`).
    static func table(_ objects: [JSON], _ resource: ServedResource, includeObject include: String, now: Double, revision: String) -> JSON {
        let columns = resource.columns
        let rows: [JSON] = objects.map { object in
            var row: JSON = ["cells": .array(columns.map { $0.cell(object, now) })]
            switch include {
            case "None": break
            case "Object": row["object"] = object
            default:
                row["object"] = ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] ?? [:]]
            }
            return row
        }
        return ["kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": ["resourceVersion": .string(revision)],
                "columnDefinitions": .array(columns.map {
                    ["name": .string($0.name), "type": .string($0.type), "format": .string($0.format),
                     "description": .string($0.description), "priority": .int(Int64($0.priority))]
                }),
                "rows": .array(rows)]
    }
}
