import Foundation
import UpkeepPKI
import UpkeepTLS

/// The sandbox cluster's TLS material, shaped like k3s's: a server CA that signs the API's
/// serving certificate, a client CA that signs the admin's client certificate
/// (CN=system:admin, O=system:masters), and a kubeconfig embedding them as k3s.yaml does.
public struct SandboxCredentials: Sendable {
    public let serverCA: CertificateAuthority
    public let clientCA: CertificateAuthority
    public let serving: (certificate: Certificate, key: PrivateKey)
    public let admin: (certificate: Certificate, key: PrivateKey)

    /// Fresh keys and certificates; the serving certificate is valid for `addresses`
    /// (IP addresses) and `names` (DNS names) besides localhost and 127.0.0.1.
    public static func generate(addresses: [String], names: [String] = []) throws -> SandboxCredentials {
        let validity = ValidityPeriod.days(365).startingEarlier(bySeconds: 300)
        let serverCA = try CertificateAuthority.create(commonName: "k3s-server-ca", keyType: .ecdsaP256, validity: validity)
        let clientCA = try CertificateAuthority.create(commonName: "k3s-client-ca", keyType: .ecdsaP256, validity: validity)
        let ips = Array(Set(["127.0.0.1"] + addresses)).sorted()
        let dns = Array(Set(["localhost", "kubernetes", "kubernetes.default"] + names)).sorted()
        let serving = try serverCA.issueServer(commonName: "k3s", dnsNames: dns, ipAddresses: ips, keyType: .ecdsaP256, validity: validity)
        let admin = try clientCA.issueClient(commonName: "system:admin", organization: "system:masters", keyType: .ecdsaP256, validity: validity)
        return SandboxCredentials(serverCA: serverCA, clientCA: clientCA, serving: serving, admin: admin)
    }

    /// The API server's TLS: client certificates from the client CA are required.
    public func serverContext() throws -> TLSContext {
        try TLSContext.publicServer(chain: [serving.certificate], key: serving.key, clientCA: [clientCA.certificate],
                                    requireClientCertificate: true)
    }

    /// A kubeconfig for the admin user, with CA, certificate and key embedded as base64 data.
    public func kubeconfig(server: String, clusterName: String = "sandbox") throws -> String {
        func data(_ pem: String) -> String { Data(pem.utf8).base64EncodedString() }
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - cluster:
                certificate-authority-data: \(data(try serverCA.certificate.pem()))
                server: \(server)
              name: \(clusterName)
            contexts:
            - context:
                cluster: \(clusterName)
                user: \(clusterName)-admin
              name: \(clusterName)
            current-context: \(clusterName)
            preferences: {}
            users:
            - name: \(clusterName)-admin
              user:
                client-certificate-data: \(data(try admin.certificate.pem()))
                client-key-data: \(data(try admin.key.pkcs8PEM()))

            """
    }

    /// Writes the kubeconfig (mode 0600: it holds the admin key) to `path`.
    public func writeKubeconfig(server: String, to path: String) throws {
        let text = try kubeconfig(server: server)
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        guard FileManager.default.contents(atPath: path) == Data(text.utf8) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }
}
