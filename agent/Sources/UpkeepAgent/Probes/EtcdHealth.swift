import NIOCore
import NIOHTTP1
import UpkeepAgentCore
import UpkeepHTTP
import UpkeepKube
import UpkeepPKI
import UpkeepTLS

/// Asks the node's embedded etcd for its members, then every member for its health, all at
/// once and each bounded (the `etcdHealth` method, PROTOCOL.md). Over k3s's own client
/// certificate on https (https://docs.k3s.io/advanced#using-etcdctl), or plain http where the
/// endpoint says so (the sandbox). `EtcdHealthVerdict` judges the answers.
public struct EtcdHealthReader: Sendable {
    public let config: EtcdConfig
    public let k3sDataDir: String
    public let group: any EventLoopGroup

    /// Members asked at most; a cluster larger than this is not one k3s makes (it recommends
    /// an odd number of servers, https://docs.k3s.io/datastore/ha-embedded).
    public static let membersMax = 15
    /// An answer larger than this is not etcd's.
    public static let answerBytesMax = 256 * 1024

    public init(config: EtcdConfig, k3sDataDir: String, group: any EventLoopGroup) {
        self.config = config
        self.k3sDataDir = k3sDataDir
        self.group = group
    }

    /// Whether this server runs embedded etcd: k3s keeps the member's data in `server/db/etcd`.
    public func embedded() -> Bool { FileSystem.exists("\(k3sDataDir)/server/db/etcd") }

    public func read(timeoutSeconds: Int) async throws(AgentFailure) -> (members: [EtcdHealthVerdict.Status], quorum: Bool) {
        let endpoint: HTTPURL
        do { endpoint = try HTTPURL(config.endpoint) } catch {
            throw AgentFailure(.io, "etcd.endpoint \(config.endpoint) is not a URL: \(error)")
        }
        let client = HTTPClient(configuration: HTTPClient.Configuration(connectTimeoutSeconds: Double(timeoutSeconds),
                                                                        responseTimeoutSeconds: Double(timeoutSeconds),
                                                                        responseBytesMax: Self.answerBytesMax, connectionsPerOriginMax: 2,
                                                                        idleSecondsMax: 5, waitingMax: Self.membersMax * 2, retry: .never,
                                                                        userAgent: "upkeep-agent"),
                                tls: try tlsContext(endpoint), group: group)
        let members: [EtcdHealthVerdict.Member]
        do {
            members = try await memberList(client, endpoint, timeoutSeconds)
        } catch {
            await client.shutdown()
            throw error
        }
        let answers = await withTaskGroup(of: (String, EtcdHealthVerdict.Answer).self) { tasks in
            for member in members {
                guard let first = member.clientURLs.first else { continue }
                tasks.addTask { (member.id, await Self.health(client, first, timeoutSeconds)) }
            }
            var found: [String: EtcdHealthVerdict.Answer] = [:]
            for await (id, answer) in tasks { found[id] = answer }
            return found
        }
        await client.shutdown()
        return EtcdHealthVerdict.judge(members, answers: answers)
    }

    private func tlsContext(_ endpoint: HTTPURL) throws(AgentFailure) -> TLSContext? {
        guard endpoint.scheme == .https else { return nil }
        let ca = config.resolvedCAFile(k3sDataDir: k3sDataDir)
        let certificate = config.resolvedCertificateFile(k3sDataDir: k3sDataDir)
        let key = config.resolvedKeyFile(k3sDataDir: k3sDataDir)
        do {
            return try TLSContext.publicClient(trust: .certificates(Certificate.loadChain(pemFile: ca)),
                                               clientChain: Certificate.loadChain(pemFile: certificate), clientKey: PrivateKey(pemFile: key))
        } catch {
            throw AgentFailure(.io, "cannot load k3s's etcd client certificate (\(ca), \(certificate), \(key)): \(error); "
                               + "set etcd.ca, etcd.certificate and etcd.key in agent.yaml")
        }
    }

    /// `POST /v3/cluster/member/list` on the node's own member (https://etcd.io/docs/v3.5/dev-guide/api_grpc_gateway/).
    private func memberList(_ client: HTTPClient, _ endpoint: HTTPURL, _ timeoutSeconds: Int) async throws(AgentFailure) -> [EtcdHealthVerdict.Member] {
        let url = endpoint.appending(path: "v3/cluster/member/list")
        let response: HTTPResponse
        do {
            response = try await client.send(HTTPRequest(method: .POST, url: url, headers: HTTPHeaders([("Content-Type", "application/json")]),
                                                         body: Array("{}".utf8), timeoutSeconds: Double(timeoutSeconds)))
        } catch {
            throw AgentFailure(.io, "the node's etcd (\(config.endpoint)) did not list its members: \(error)")
        }
        guard response.status == 200, let json = try? JSON.parse(bytes: response.body), let list = json["members"]?.array else {
            throw AgentFailure(.io, "the node's etcd (\(config.endpoint)) answered the member list with \(response.status): "
                               + "\(String(response.text.prefix(200)))")
        }
        guard list.count <= Self.membersMax else {
            throw AgentFailure(.io, "the node's etcd lists \(list.count) members; more than \(Self.membersMax) is not a k3s cluster")
        }
        return list.map { member in
            // uint64 fields travel as strings in the JSON gateway.
            let id = member["ID"]?.string ?? member["ID"]?.int.map { String($0) } ?? ""
            return EtcdHealthVerdict.Member(id: id, name: member["name"]?.string ?? "",
                                            clientURLs: (member["clientURLs"]?.array ?? []).compactMap(\.string))
        }
    }

    /// `GET <clientURL>/health`, bounded.
    private static func health(_ client: HTTPClient, _ clientURL: String, _ timeoutSeconds: Int) async -> EtcdHealthVerdict.Answer {
        guard let base = try? HTTPURL(clientURL) else { return .noAnswer("its client URL \(clientURL) is not a URL") }
        do {
            let response = try await client.send(HTTPRequest(url: base.appending(path: "health"), timeoutSeconds: Double(timeoutSeconds)))
            let json = try? JSON.parse(bytes: response.body)
            return .answered(status: response.status, health: json?["health"]?.string, reason: json?["reason"]?.string)
        } catch let error as HTTPClientError {
            switch error {
            case .connectTimeout, .responseTimeout: return .noAnswer("no answer within \(timeoutSeconds) s")
            default: return .noAnswer("\(error)")
            }
        } catch {
            return .noAnswer("\(error)")
        }
    }
}
