import NIOCore
import NIOHTTP1
import UpkeepAgentCore
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// Checks whether the node is Ready through the Kubernetes API, at an expected kubeletVersion.
public protocol NodeReadinessChecking: Sendable {
    func check(node: String, expectedK3sVersion: String?) async -> (ok: Bool, message: String)
}

/// The node's health checks: unit active, kubelet healthz, supervisor /ping (servers), node Ready
/// through the API (when a checker is given), containerd socket present. All run at once, each
/// bounded by the configured timeout, each with its own result, latency and message.
public struct HealthProbes: Sendable {
    public let config: ProbeConfig
    public let nodeName: String
    public let isServer: Bool
    public let systemctl: Systemctl
    public let group: any EventLoopGroup
    public let readiness: (any NodeReadinessChecking)?

    public init(config: ProbeConfig, nodeName: String, isServer: Bool, systemctl: Systemctl, group: any EventLoopGroup,
                readiness: (any NodeReadinessChecking)?) {
        self.config = config
        self.nodeName = nodeName
        self.isServer = isServer
        self.systemctl = systemctl
        self.group = group
        self.readiness = readiness
    }

    public func run(expectedK3sVersion: String?) async -> ProbeReport {
        await withTaskGroup(of: (Int, ProbeReport.Check).self) { group in
            var index = 0
            func add(_ name: String, _ body: @escaping @Sendable () async -> (Bool, String)) {
                let position = index
                index += 1
                group.addTask { (position, await Self.timed(name, body)) }
            }
            add("unit") { await unitCheck() }
            if !config.kubeletHealthzURL.isEmpty {
                add("kubelet") { await kubeletCheck() }
            }
            if isServer, !config.supervisorPingURL.isEmpty {
                add("supervisor") { await supervisorCheck() }
            }
            if config.nodeReady, let readiness {
                let node = nodeName
                add("nodeReady") { await readiness.check(node: node, expectedK3sVersion: expectedK3sVersion) }
            }
            if !config.containerdSocket.isEmpty {
                let socket = config.containerdSocket
                add("containerd") {
                    FileSystem.isSocket(socket) ? (true, "\(socket) present") : (false, "\(socket) is not a socket (containerd not running)")
                }
            }
            var checks: [(Int, ProbeReport.Check)] = []
            for await check in group { checks.append(check) }
            return ProbeReport(checks: checks.sorted { $0.0 < $1.0 }.map(\.1))
        }
    }

    /// The first sign that a restarted k3s is up: kubelet healthz alone (one local request, no
    /// process). Passes at once when no healthz endpoint is configured.
    public func gate() async -> ProbeReport {
        guard !config.kubeletHealthzURL.isEmpty else {
            return ProbeReport(checks: [ProbeReport.Check(name: "kubelet", ok: true, latencyMs: 0, message: "no kubelet healthz configured")])
        }
        return ProbeReport(checks: [await Self.timed("kubelet") { await kubeletCheck() }])
    }

    /// Runs one check and records how long it took.
    private static func timed(_ name: String, _ body: () async -> (Bool, String)) async -> ProbeReport.Check {
        let start = ContinuousClock.now
        let (ok, message) = await body()
        let elapsed = ContinuousClock.now - start
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        return ProbeReport.Check(name: name, ok: ok, latencyMs: ms, message: message)
    }

    private func kubeletCheck() async -> (Bool, String) {
        await httpCheck(config.kubeletHealthzURL, expecting: "ok", tls: nil)
    }

    private func unitCheck() async -> (Bool, String) {
        do {
            let state = try await systemctl.activeState()
            return (state == "active", "\(systemctl.unit) is \(state)")
        } catch {
            return (false, error.message)
        }
    }

    private func supervisorCheck() async -> (Bool, String) {
        let context: TLSContext
        do {
            let ca = try Certificate.loadChain(pemFile: config.supervisorCAFile)
            context = try TLSContext.publicClient(trust: .certificates(ca))
        } catch {
            return (false, "cannot load the k3s server CA \(config.supervisorCAFile): \(error)")
        }
        return await httpCheck(config.supervisorPingURL, expecting: "pong", tls: context)
    }

    /// One GET on a connection of its own (`Connection: close`: each probe proves the endpoint
    /// still accepts connections), with one deadline for connect, handshake and answer, no
    /// retry, and an answer of at most `probeBytesMax`.
    private func httpCheck(_ url: String, expecting expected: String, tls: TLSContext?) async -> (Bool, String) {
        guard let target = try? HTTPURL(url) else { return (false, "\(url) is not a valid URL") }
        let timeoutSeconds = Double(config.timeoutMs) / 1000
        let configuration = HTTPClient.Configuration(connectTimeoutSeconds: timeoutSeconds, responseTimeoutSeconds: timeoutSeconds,
                                                     responseBytesMax: Self.probeBytesMax, connectionsPerOriginMax: 1, retry: .never,
                                                     userAgent: "upkeep-agent")
        let client = HTTPClient(configuration: configuration, tls: tls, group: group)
        let result: (Bool, String)
        do {
            let response = try await client.send(HTTPRequest(url: target, headers: HTTPHeaders([("Connection", "close")]),
                                                             timeoutSeconds: timeoutSeconds))
            let body = response.text.trimmingWhitespace()
            result = response.status == 200 && body == expected
                ? (true, "\(url) answered \(expected)")
                : (false, "\(url) answered \(response.status) \"\(body.prefix(80))\", expected 200 \"\(expected)\"")
        } catch {
            result = (false, "\(url): \(error)")
        }
        await client.shutdown()
        return result
    }

    /// A health endpoint answers a word; anything longer is not one.
    public static let probeBytesMax = 64 * 1024
}
