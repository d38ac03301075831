#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import UpkeepCore
import UpkeepHTTP
import UpkeepYAML
import UpkeepPOSIX
#if canImport(Glibc)
import Glibc
#endif

/// A kubeconfig file: clusters, users and contexts, as kubectl reads them.
///
/// Supports what k3s and Upkeep's sandbox write: server URL, CA as data or file, client
/// certificate and key as data or files, bearer token or token file. Exec and auth-provider
/// plugins are refused with a clear error rather than silently ignored.
public struct Kubeconfig: Sendable, Equatable {
    public struct Cluster: Sendable, Equatable {
        public var server: String
        /// PEM text of the CA bundle (from `certificate-authority-data` or the file it names).
        public var certificateAuthorityPEM: String?
        public var insecureSkipTLSVerify: Bool
        public var tlsServerName: String?
    }

    public struct User: Sendable, Equatable {
        public var clientCertificatePEM: String?
        public var clientKeyPEM: String?
        public var token: String?
        /// The user entry names a plugin (exec, auth-provider) Upkeep does not run.
        public var unsupported: String?
    }

    public struct Context: Sendable, Equatable {
        public var cluster: String
        public var user: String
        public var namespace: String?
    }

    public var clusters: [String: Cluster]
    public var users: [String: User]
    public var contexts: [String: Context]
    public var currentContext: String?
    /// The file this configuration was read from.
    public var path: String

    /// The files kubectl would read, in order: each entry of `KUBECONFIG`, else
    /// `~/.kube/config`, else k3s's `/etc/rancher/k3s/k3s.yaml`.
    public static func candidatePaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return list.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        var paths: [String] = []
        if let home = environment["HOME"] { paths.append("\(home)/.kube/config") }
        paths.append("/etc/rancher/k3s/k3s.yaml")
        return paths
    }

    /// Reads `path`, or the first existing candidate path; for several `KUBECONFIG` files the
    /// first file that defines a name wins, as with kubectl.
    public static func load(path: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws(KubeconfigError) -> Kubeconfig {
        if let path { return try parse(contentsOf: path) }
        let candidates = candidatePaths(environment: environment)
        let existing = candidates.filter { FileManager.default.fileExists(atPath: $0) }
        guard var merged = try existing.first.map({ path throws(KubeconfigError) in try parse(contentsOf: path) }) else {
            throw .notFound(candidates)
        }
        for path in existing.dropFirst() {
            let next = try parse(contentsOf: path)
            merged.clusters.merge(next.clusters) { first, _ in first }
            merged.users.merge(next.users) { first, _ in first }
            merged.contexts.merge(next.contexts) { first, _ in first }
            if merged.currentContext == nil { merged.currentContext = next.currentContext }
        }
        return merged
    }

    /// The most a kubeconfig, or a file it names, may hold: far more than any real one, and a
    /// bound on what a wrong path (a disk image, say) makes the agent read.
    public static let fileBytesMax = 4 << 20

    public static func parse(contentsOf path: String) throws(KubeconfigError) -> Kubeconfig {
        let bytes = try read(path, for: path) { _ in .notFound([path]) }
        return try parse(yaml: String(decoding: bytes, as: UTF8.self), directory: PathName.directory(path), path: path)
    }

    /// The bytes of `file`, bounded; `missing` says what an absent file means.
    static func read(_ file: String, for path: String, missing: (String) -> KubeconfigError) throws(KubeconfigError) -> [UInt8] {
        do {
            return try BoundedRead.bytes(file, bytesMax: fileBytesMax)
        } catch {
            switch error {
            case .open(ENOENT): throw missing(file)
            case .open(let code), .read(let code): throw .invalid(path, "cannot read \(file): \(String(cString: strerror(code)))")
            case .tooLarge: throw .invalid(path, "\(file) holds more than \(fileBytesMax >> 20) MiB; is it the right file?")
            }
        }
    }

    /// Parses kubeconfig YAML; relative file references resolve against `directory`.
    ///
    /// Read by `UpkeepYAML.YAMLReader` (every scalar text, booleans and nulls by their YAML 1.1
    /// spellings), not Yams: the agent reads kubeconfigs, and Yams brings full Foundation,
    /// CoreFoundation and ICU into its memory.
    public static func parse(yaml: String, directory: String, path: String = "<memory>") throws(KubeconfigError) -> Kubeconfig {
        let root: YAMLNode?
        do { root = try YAMLReader.document(yaml) } catch { throw .invalid(path, "not YAML: \(error)") }
        guard let document = root, document.mapping != nil else { throw .invalid(path, "the top level is not a mapping") }
        /// A scalar field's text; absent, null and non-scalar values are nil.
        func text(_ node: YAMLNode?, _ key: String) -> String? {
            guard let value = node?[key], !value.isNull else { return nil }
            return value.string
        }
        func named(_ key: String, _ inner: String) throws(KubeconfigError) -> [(String, YAMLNode?)] {
            guard let list = document[key], !list.isNull else { return [] }
            guard let entries = list.sequence else { throw .invalid(path, "\(key) is not a list") }
            var out: [(String, YAMLNode?)] = []
            for entry in entries {
                guard entry.mapping != nil, let name = entry["name"]?.string else {
                    throw .invalid(path, "an entry of \(key) has no name (line \(entry.line))")
                }
                out.append((name, entry[inner]?.mapping != nil ? entry[inner] : nil))
            }
            return out
        }
        func file(_ name: String) throws(KubeconfigError) -> String {
            let full = name.hasPrefix("/") ? name : "\(directory)/\(name)"
            let bytes = try read(full, for: path) { file in .invalid(path, "cannot read \(file), which it names") }
            return String(decoding: bytes, as: UTF8.self)
        }
        func base64(_ text: String, _ field: String) throws(KubeconfigError) -> String {
            guard let data = Data(base64Encoded: text.filter { !$0.isWhitespace }) else {
                throw .invalid(path, "\(field) is not base64")
            }
            return String(decoding: data, as: UTF8.self)
        }
        var config = Kubeconfig(clusters: [:], users: [:], contexts: [:],
                                currentContext: document["current-context"]?.string.flatMap { YAML11Scalars.isNull($0) ? nil : $0 }, path: path)
        for (name, fields) in try named("clusters", "cluster") {
            guard let server = text(fields, "server"), !server.isEmpty else { throw .invalid(path, "cluster \(name) has no server") }
            var ca: String?
            if let data = text(fields, "certificate-authority-data") {
                ca = try base64(data, "clusters[\(name)].certificate-authority-data")
            } else if let caFile = text(fields, "certificate-authority") {
                ca = try file(caFile)
            }
            config.clusters[name] = Cluster(server: server, certificateAuthorityPEM: ca,
                                            insecureSkipTLSVerify: text(fields, "insecure-skip-tls-verify").flatMap(YAML11Scalars.boolean) ?? false,
                                            tlsServerName: text(fields, "tls-server-name"))
        }
        for (name, fields) in try named("users", "user") {
            var user = User()
            if let data = text(fields, "client-certificate-data") {
                user.clientCertificatePEM = try base64(data, "users[\(name)].client-certificate-data")
            } else if let certFile = text(fields, "client-certificate") {
                user.clientCertificatePEM = try file(certFile)
            }
            if let data = text(fields, "client-key-data") {
                user.clientKeyPEM = try base64(data, "users[\(name)].client-key-data")
            } else if let keyFile = text(fields, "client-key") {
                user.clientKeyPEM = try file(keyFile)
            }
            if let token = text(fields, "token") {
                user.token = token
            } else if let tokenFile = text(fields, "tokenFile") {
                user.token = Self.trimmed(try file(tokenFile))
            }
            if fields?["exec"] != nil { user.unsupported = "exec credential plugins" }
            if fields?["auth-provider"] != nil { user.unsupported = "auth-provider plugins" }
            if fields?["username"] != nil && user.token == nil && user.clientCertificatePEM == nil { user.unsupported = "basic authentication" }
            config.users[name] = user
        }
        for (name, fields) in try named("contexts", "context") {
            guard let cluster = text(fields, "cluster") else { throw .invalid(path, "context \(name) names no cluster") }
            config.contexts[name] = Context(cluster: cluster, user: text(fields, "user") ?? "", namespace: text(fields, "namespace"))
        }
        return config
    }

    /// `text` without leading and trailing whitespace and line breaks (a token file's final newline).
    static func trimmed(_ text: String) -> String {
        String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }

    /// What a client needs to reach the API in `context` (the current context by default).
    public func endpoint(context: String? = nil) throws(KubeconfigError) -> KubeEndpoint {
        guard let contextName = context ?? currentContext else { throw .noContext(path) }
        guard let selected = contexts[contextName] else { throw .unknown("context", contextName, path) }
        guard let cluster = clusters[selected.cluster] else { throw .unknown("cluster", selected.cluster, path) }
        let user = selected.user.isEmpty ? User() : (users[selected.user] ?? User())
        if !selected.user.isEmpty && users[selected.user] == nil { throw .unknown("user", selected.user, path) }
        if let unsupported = user.unsupported {
            throw .unsupported("user \(selected.user) uses \(unsupported); give a client certificate or a token instead")
        }
        if cluster.insecureSkipTLSVerify {
            throw .unsupported("cluster \(selected.cluster) sets insecure-skip-tls-verify; give its CA (certificate-authority-data) instead")
        }
        if (user.clientCertificatePEM == nil) != (user.clientKeyPEM == nil) {
            throw .invalid(path, "user \(selected.user) has a client certificate without a key, or a key without a certificate")
        }
        guard let url = KubeEndpoint.ServerURL(cluster.server) else {
            throw .invalid(path, "cluster \(selected.cluster) has an unusable server URL \(cluster.server) (expected http(s)://host[:port])")
        }
        return KubeEndpoint(server: url, certificateAuthorityPEM: cluster.certificateAuthorityPEM, tlsServerName: cluster.tlsServerName,
                            clientCertificatePEM: user.clientCertificatePEM, clientKeyPEM: user.clientKeyPEM, bearerToken: user.token,
                            namespace: selected.namespace ?? "default")
    }
}

/// Where and how to reach one Kubernetes API server.
public struct KubeEndpoint: Sendable, Equatable {
    /// The `server` of a kubeconfig cluster: an http(s) origin and a path prefix.
    public struct ServerURL: Sendable, Equatable, CustomStringConvertible {
        /// The server's root, its path being `basePath` (or `/`).
        public let url: HTTPURL
        public var isTLS: Bool { url.scheme == .https }
        public var host: String { url.host }
        public var port: Int { url.port }
        /// A path prefix (`/k8s/clusters/c-1` behind a proxy), without a trailing slash.
        public let basePath: String

        /// Nil unless `text` is an `http(s)://host[:port][/prefix]` URL (`HTTPURL`'s rules).
        public init?(_ text: String) {
            guard let parsed = try? HTTPURL(text) else { return nil }
            var path = parsed.path
            while path.hasSuffix("/") { path.removeLast() }
            basePath = path
            url = HTTPURL(scheme: parsed.scheme, host: parsed.host, port: parsed.port, target: path.isEmpty ? "/" : path)
        }

        public var description: String {
            let h = host.contains(Character(":")) ? "[\(host)]" : host
            return "\(isTLS ? "https" : "http")://\(h):\(port)\(basePath)"
        }
    }

    public var server: ServerURL
    public var certificateAuthorityPEM: String?
    public var tlsServerName: String?
    public var clientCertificatePEM: String?
    public var clientKeyPEM: String?
    public var bearerToken: String?
    public var namespace: String

    public init(server: ServerURL, certificateAuthorityPEM: String? = nil, tlsServerName: String? = nil, clientCertificatePEM: String? = nil,
                clientKeyPEM: String? = nil, bearerToken: String? = nil, namespace: String = "default")
    {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.tlsServerName = tlsServerName
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.bearerToken = bearerToken
        self.namespace = namespace
    }
}

/// Why a kubeconfig could not be used, saying what to fix.
public enum KubeconfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case notFound([String])
    case invalid(String, String)
    case noContext(String)
    case unknown(String, String, String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .notFound(let paths):
            "no kubeconfig found (looked at \(paths.joined(separator: ", "))); set KUBECONFIG or pass --kubeconfig"
        case .invalid(let path, let reason): "kubeconfig \(path) is invalid: \(reason)"
        case .noContext(let path): "kubeconfig \(path) has no current-context; set one (kubectl config use-context) or name a context"
        case .unknown(let kind, let name, let path): "kubeconfig \(path) names \(kind) \(name), which it does not define"
        case .unsupported(let reason): reason
        }
    }
}
