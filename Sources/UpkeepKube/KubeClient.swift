import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// A Kubernetes API client: the verbs Upkeep needs and typed views, on `HTTPClient` (keep-alive
/// HTTP/1.1, over TLS for `https://` servers with a client certificate or bearer token).
///
/// Failed API calls throw `KubeAPIError` (read from the server's `Status`); calls that got no
/// answer throw `HTTPClientError`. It keeps at most `connectionsMax` connections open, sends
/// each request once (`RetryPolicy.never`: its callers observe again or retry evictions on their
/// own schedule, and a 429 here is an eviction refused, not a rate limit) and never logs
/// credentials.
public final class KubeClient: Sendable {
    public let endpoint: KubeEndpoint
    /// How long one request may take as a whole: connecting (TCP and TLS, itself at most 10 s),
    /// sending and the answer's last byte.
    public let requestTimeoutSeconds: Double
    /// The HTTP client underneath; its `limits` count the bounds reached.
    public let http: HTTPClient

    public static let bodyBytesMax = 64 << 20
    static let listPageSize = 500

    /// `userAgent` names the caller in the server's audit (`upkeep-rehearse` for a rehearsal's reads).
    public init(endpoint: KubeEndpoint, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                requestTimeoutSeconds: Double = 30, connectionsMax: Int = 4, userAgent: String = "upkeep") throws
    {
        self.endpoint = endpoint
        self.requestTimeoutSeconds = requestTimeoutSeconds
        var tls: TLSContext?
        if endpoint.server.isTLS {
            let trust: TrustRoots = try endpoint.certificateAuthorityPEM.map { .certificates(try Certificate.loadChain(pem: $0)) } ?? .system
            var chain: [Certificate]?
            var key: PrivateKey?
            if let certificate = endpoint.clientCertificatePEM, let keyPEM = endpoint.clientKeyPEM {
                chain = try Certificate.loadChain(pem: certificate)
                key = try PrivateKey(pem: keyPEM)
            }
            tls = try TLSContext.publicClient(trust: trust, clientChain: chain, clientKey: key)
        }
        let configuration = HTTPClient.Configuration(connectTimeoutSeconds: 10, responseTimeoutSeconds: requestTimeoutSeconds,
                                                     responseBytesMax: Self.bodyBytesMax, connectionsPerOriginMax: connectionsMax,
                                                     retry: .never, userAgent: userAgent)
        http = HTTPClient(configuration: configuration, tls: tls, tlsServerName: endpoint.tlsServerName, group: group)
    }

    /// A client for the current context of the kubeconfig kubectl would use (or `path`).
    public convenience init(kubeconfig path: String? = nil, context: String? = nil) throws {
        try self.init(endpoint: try Kubeconfig.load(path: path).endpoint(context: context))
    }

    /// Closes every connection; later calls throw `HTTPClientError.shutDown`.
    public func shutdown() async {
        await http.shutdown()
    }

    // MARK: - Raw requests

    /// Sends one request and returns the decoded JSON body of a 2xx answer.
    public func request(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSON? = nil,
                        contentType: String = "application/json") async throws -> JSON
    {
        let reply = try await send(method, path, query: query, body: body.map { $0.serialized() } ?? [], contentType: contentType)
        guard reply.isSuccess else { throw KubeAPIError(code: reply.status, body: reply.body) }
        if reply.body.isEmpty { return .null }
        do { return try JSON.parse(bytes: reply.body) } catch {
            throw HTTPClientError.invalidResponse(url: reply.url.description, reason: "the body is not JSON: \(error)")
        }
    }

    func send(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: [UInt8], contentType: String) async throws -> HTTPResponse {
        let url = endpoint.server.url.appending(path: path).appending(query: query)
        var headers = HTTPHeaders([("Accept", "application/json")])
        if let token = endpoint.bearerToken { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if !body.isEmpty || method == .POST || method == .PUT || method == .PATCH {
            headers.add(name: "Content-Type", value: contentType)
        }
        return try await http.send(HTTPRequest(method: method, url: url, headers: headers, body: body, timeoutSeconds: requestTimeoutSeconds))
    }

    // MARK: - Verbs on JSON

    public func get(_ type: ResourceType, _ name: String, namespace: String? = nil) async throws -> JSON {
        try await request(.GET, type.objectPath(name: name, namespace: namespace))
    }

    /// Every object matching the selectors, following `continue` tokens page by page.
    public func list(_ type: ResourceType, namespace: String? = nil, labelSelector: LabelSelector? = nil,
                     fieldSelector: FieldSelector? = nil) async throws -> [JSON]
    {
        try await listWithVersion(type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector).items
    }

    /// `list`, with the list's `resourceVersion` (the first page's): where a watch resumes.
    public func listWithVersion(_ type: ResourceType, namespace: String? = nil, labelSelector: LabelSelector? = nil,
                                fieldSelector: FieldSelector? = nil) async throws -> (items: [JSON], resourceVersion: String)
    {
        var version: String?
        var items: [JSON] = []
        var token: String?
        var pages = 0
        repeat {
            var query: [(String, String)] = [("limit", String(Self.listPageSize))]
            if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector.description)) }
            if let fieldSelector, !fieldSelector.terms.isEmpty { query.append(("fieldSelector", fieldSelector.description)) }
            if let token { query.append(("continue", token)) }
            let page = try await request(.GET, type.collectionPath(namespace: namespace), query: query)
            items += page["items"]?.array ?? []
            version = version ?? page[path: "metadata", "resourceVersion"]?.string
            token = page[path: "metadata", "continue"]?.string.flatMap { $0.isEmpty ? nil : $0 }
            pages += 1
        } while token != nil && pages < 10_000
        return (items, version ?? "")
    }

    public func create(_ type: ResourceType, _ object: JSON) async throws -> JSON {
        let namespace = type.namespaced ? (object[path: "metadata", "namespace"]?.string ?? endpoint.namespace) : nil
        return try await request(.POST, type.collectionPath(namespace: namespace), body: object)
    }

    public func replace(_ type: ResourceType, _ object: JSON, subresource: String? = nil) async throws -> JSON {
        let name = object[path: "metadata", "name"]?.string ?? ""
        let namespace = type.namespaced ? (object[path: "metadata", "namespace"]?.string ?? endpoint.namespace) : nil
        return try await request(.PUT, type.objectPath(name: name, namespace: namespace, subresource: subresource), body: object)
    }

    public func patch(_ type: ResourceType, _ name: String, namespace: String? = nil, _ patch: JSON, as patchType: PatchType = .merge,
                      subresource: String? = nil) async throws -> JSON
    {
        try await request(.PATCH, type.objectPath(name: name, namespace: namespace, subresource: subresource), body: patch,
                          contentType: patchType.rawValue)
    }

    /// Deletes an object; a missing one throws `KubeAPIError` with reason `NotFound`.
    public func delete(_ type: ResourceType, _ name: String, namespace: String? = nil, gracePeriodSeconds: Int64? = nil) async throws {
        var options: JSON = ["kind": "DeleteOptions", "apiVersion": "v1"]
        if let gracePeriodSeconds { options["gracePeriodSeconds"] = .int(gracePeriodSeconds) }
        _ = try await request(.DELETE, type.objectPath(name: name, namespace: namespace), body: options)
    }

    /// Asks to evict a pod, respecting disruption budgets: a refusal throws `KubeAPIError`
    /// with code 429 (`isTooManyRequests`), to be retried later.
    public func evict(pod name: String, namespace: String, gracePeriodSeconds: Int64? = nil) async throws {
        let eviction = Eviction(podName: name, namespace: namespace, gracePeriodSeconds: gracePeriodSeconds)
        _ = try await request(.POST, ResourceType.pods.objectPath(name: name, namespace: namespace, subresource: "eviction"), body: eviction.json)
    }

    /// `/version`: the API server's `gitVersion` and friends.
    public func version() async throws -> JSON {
        try await request(.GET, "/version")
    }

    // MARK: - Typed verbs

    public func get<T: KubeObject>(_: T.Type, _ name: String, namespace: String? = nil) async throws -> T {
        T(json: try await get(T.resource, name, namespace: namespace))
    }

    public func list<T: KubeObject>(_: T.Type, namespace: String? = nil, labelSelector: LabelSelector? = nil,
                                    fieldSelector: FieldSelector? = nil) async throws -> [T]
    {
        try await list(T.resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector).map(T.init)
    }

    public func create<T: KubeObject>(_ object: T) async throws -> T {
        T(json: try await create(T.resource, object.json))
    }

    public func patch<T: KubeObject>(_: T.Type, _ name: String, namespace: String? = nil, _ patch: JSON, as patchType: PatchType = .merge,
                                     subresource: String? = nil) async throws -> T
    {
        T(json: try await self.patch(T.resource, name, namespace: namespace, patch, as: patchType, subresource: subresource))
    }

    /// Pods scheduled on `node`, in every namespace.
    public func pods(on node: String) async throws -> [Pod] {
        try await list(Pod.self, fieldSelector: .equals("spec.nodeName", node))
    }
}
