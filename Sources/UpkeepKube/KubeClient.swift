import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepPKI
import UpkeepTLS

/// A Kubernetes API client: keep-alive HTTP/1.1 (over TLS for `https://` servers, with client
/// certificate or bearer token), typed errors, and the verbs Upkeep needs.
///
/// Failed API calls throw `KubeAPIError` (read from the server's `Status`); calls that got no
/// answer throw `KubeTransportError`. It keeps at most `connectionsMax` connections open and
/// never logs credentials.
public final class KubeClient: Sendable {
    public let endpoint: KubeEndpoint
    public let requestTimeoutSeconds: Double
    let tls: TLSContext?
    let pool: ConnectionPool

    public static let bodyBytesMax = 64 << 20
    static let listPageSize = 500

    public init(endpoint: KubeEndpoint, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                requestTimeoutSeconds: Double = 30, connectionsMax: Int = 4) throws
    {
        self.endpoint = endpoint
        self.requestTimeoutSeconds = requestTimeoutSeconds
        if endpoint.server.isTLS {
            let trust: TrustRoots = try endpoint.certificateAuthorityPEM.map { .certificates(try Certificate.loadChain(pem: $0)) } ?? .system
            var chain: [Certificate]?
            var key: PrivateKey?
            if let certificate = endpoint.clientCertificatePEM, let keyPEM = endpoint.clientKeyPEM {
                chain = try Certificate.loadChain(pem: certificate)
                key = try PrivateKey(pem: keyPEM)
            }
            tls = try TLSContext.publicClient(trust: trust, clientChain: chain, clientKey: key)
        } else {
            tls = nil
        }
        let server = endpoint.server
        let tls = self.tls
        pool = ConnectionPool(connectionsMax: connectionsMax) {
            try await HTTPConnection.connect(host: server.host, port: server.port, tls: tls,
                                             expectedHost: endpoint.tlsServerName ?? server.host, group: group,
                                             connectTimeoutSeconds: 10, bodyBytesMax: KubeClient.bodyBytesMax)
        }
    }

    /// A client for the current context of the kubeconfig kubectl would use (or `path`).
    public convenience init(kubeconfig path: String? = nil, context: String? = nil) throws {
        try self.init(endpoint: try Kubeconfig.load(path: path).endpoint(context: context))
    }

    /// Closes every connection; later calls throw `KubeTransportError.shutDown`.
    public func shutdown() async {
        await pool.shutdown()
    }

    // MARK: - Raw requests

    /// Sends one request and returns the decoded JSON body of a 2xx answer.
    public func request(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSON? = nil,
                        contentType: String = "application/json") async throws -> JSON
    {
        let reply = try await send(method, path, query: query, body: body.map { $0.serialized() } ?? [], contentType: contentType)
        guard (200..<300).contains(reply.status) else { throw KubeAPIError(code: reply.status, body: reply.body) }
        if reply.body.isEmpty { return .null }
        do { return try JSON.parse(bytes: reply.body) } catch {
            throw KubeTransportError.invalidResponse("body is not JSON: \(error)")
        }
    }

    func send(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: [UInt8], contentType: String) async throws -> HTTPReply {
        var uri = endpoint.server.basePath + path
        if !query.isEmpty { uri += "?" + query.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&") }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(endpoint.server.host):\(endpoint.server.port)")
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "User-Agent", value: "upkeep")
        if let token = endpoint.bearerToken { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if !body.isEmpty || method == .POST || method == .PUT || method == .PATCH {
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(body.count))
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
        // A reused connection the server closed while idle fails before any answer: a GET is
        // safe to send once more on a fresh connection.
        for attempt in 0..<2 {
            let (connection, reused) = try await pool.acquire()
            do {
                let reply = try await connection.send(head, body: body, timeoutSeconds: requestTimeoutSeconds)
                await pool.release(connection)
                return reply
            } catch let error as KubeTransportError {
                await pool.discard(connection)
                if error == .connectionClosed, reused, method == .GET, attempt == 0 { continue }
                throw error
            } catch {
                await pool.discard(connection)
                throw error
            }
        }
        throw KubeTransportError.connectionClosed
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default:
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return out
    }

    // MARK: - Verbs on JSON

    public func get(_ type: ResourceType, _ name: String, namespace: String? = nil) async throws -> JSON {
        try await request(.GET, type.objectPath(name: name, namespace: namespace))
    }

    /// Every object matching the selectors, following `continue` tokens page by page.
    public func list(_ type: ResourceType, namespace: String? = nil, labelSelector: LabelSelector? = nil,
                     fieldSelector: FieldSelector? = nil) async throws -> [JSON]
    {
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
            token = page[path: "metadata", "continue"]?.string.flatMap { $0.isEmpty ? nil : $0 }
            pages += 1
        } while token != nil && pages < 10_000
        return items
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

/// Idle keep-alive connections, at most `connectionsMax` open; callers beyond that wait in a
/// bounded queue.
actor ConnectionPool {
    let connectionsMax: Int
    let connect: @Sendable () async throws -> HTTPConnection
    var idle: [HTTPConnection] = []
    var open = 0
    var waiters: [CheckedContinuation<Void, Never>] = []
    var isShutDown = false
    static let waitersMax = 10_000

    init(connectionsMax: Int, connect: @escaping @Sendable () async throws -> HTTPConnection) {
        self.connectionsMax = max(1, connectionsMax)
        self.connect = connect
    }

    func acquire() async throws -> (HTTPConnection, reused: Bool) {
        while true {
            guard !isShutDown else { throw KubeTransportError.shutDown }
            while let connection = idle.popLast() {
                if connection.isActive { return (connection, true) }
                open -= 1
            }
            if open < connectionsMax {
                open += 1
                do {
                    return (try await connect(), false)
                } catch {
                    open -= 1
                    wakeOne()
                    throw error
                }
            }
            guard waiters.count < Self.waitersMax else { throw KubeTransportError.tooManyWaiters(Self.waitersMax) }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    func release(_ connection: HTTPConnection) {
        if isShutDown || !connection.isActive {
            open -= 1
            Task { await connection.close() }
        } else {
            idle.append(connection)
        }
        wakeOne()
    }

    func discard(_ connection: HTTPConnection) async {
        open -= 1
        await connection.close()
        wakeOne()
    }

    private func wakeOne() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    func shutdown() async {
        isShutDown = true
        let connections = idle
        idle = []
        open -= connections.count
        for connection in connections { await connection.close() }
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}
