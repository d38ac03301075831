import NIOHTTP1
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// The joining node's side of the join protocol (`JoinWire`): fetch the cluster CA, pin it by
/// hash, then send the token and the node's CSR to a server that proves it is a controller under
/// that CA. The node's private key is never an input: only its CSR is.
public enum JoinClient {
    /// Connect, TLS handshake and each answer are bounded by this.
    public static let timeoutSeconds = 30.0

    /// The certificate the join server issued for `request`, and the cluster CA.
    public static func enroll(controller: String, token: BootstrapToken, pin: CAHash, request: CertificateSigningRequest, force: Bool,
                              timeoutSeconds: Double = timeoutSeconds) async throws(JoinError) -> (certificate: Certificate, ca: Certificate) {
        let (host, port) = try hostAndPort(controller)
        let configuration = HTTPClient.Configuration(connectTimeoutSeconds: timeoutSeconds, responseTimeoutSeconds: timeoutSeconds,
                                                     responseBytesMax: JoinWire.bodyBytesMax, connectionsPerOriginMax: 1,
                                                     retry: .never, userAgent: "upkeep-agent join")
        // 1. The CA, over TLS that verifies nothing yet: its hash is the check.
        let ca = try await fetchCA(host: host, port: port, configuration: configuration, controller: controller)
        let actual = CAHash(of: ca)
        guard actual == pin else { throw .caMismatch(expected: pin.description, actual: actual.description) }
        guard ca.isCA else { throw .malformedMessage("the join server's CA certificate is not a CA") }

        // 2. The token and the CSR, only to a controller identity under the pinned CA.
        let response: HTTPResponse
        let client: HTTPClient
        do {
            client = HTTPClient(configuration: configuration, tls: try TLSContext.publicClient(trust: .certificates([ca])),
                                tlsPeer: .roles([.controller]))
        } catch {
            throw .malformedMessage("cannot trust the join server's CA: \(error)")
        }
        do {
            let body = try JoinWire.Request(token: token.text, csr: request.pem(), force: force).body
            response = try await client.send(HTTPRequest(method: .POST, url: HTTPURL(scheme: .https, host: host, port: port, target: JoinWire.joinPath),
                                                         headers: ["Content-Type": "application/json"], body: body))
        } catch {
            await client.shutdown()
            throw .unreachable(controller: controller, reason: "\(error)")
        }
        await client.shutdown()
        guard response.status == 200 else { throw .refused(status: response.status, message: JoinWire.errorMessage(response.body)) }
        let answer = try JoinWire.Response(body: response.body)
        let certificate: Certificate
        do {
            certificate = try Certificate(pem: answer.certificate)
        } catch {
            throw .malformedMessage("the join server's certificate does not parse: \(error)")
        }
        guard certificate.isSigned(by: ca), (try? Certificate(pem: answer.ca)).map(pin.matches) == true else {
            throw .malformedMessage("the join server answered with a certificate its pinned CA did not sign")
        }
        return (certificate, ca)
    }

    private static func fetchCA(host: String, port: Int, configuration: HTTPClient.Configuration, controller: String) async throws(JoinError) -> Certificate {
        let client: HTTPClient
        do {
            client = HTTPClient(configuration: configuration, tls: try TLSContext.discoveryClient(), tlsPeer: .any)
        } catch {
            throw .malformedMessage("cannot set up TLS: \(error)")
        }
        let response: HTTPResponse
        do {
            response = try await client.get(HTTPURL(scheme: .https, host: host, port: port, target: JoinWire.caPath))
        } catch {
            await client.shutdown()
            throw .unreachable(controller: controller, reason: "\(error)")
        }
        await client.shutdown()
        guard response.status == 200, let ca = try? Certificate(pem: response.text) else {
            throw .malformedMessage("\(controller) answered \(JoinWire.caPath) with HTTP \(response.status), not a CA certificate")
        }
        return ca
    }

    /// HOST:PORT or [IPv6]:PORT.
    public static func hostAndPort(_ text: String) throws(JoinError) -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw .malformedController(text)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("/") else { throw .malformedController(text) }
        return (host, port)
    }
}
