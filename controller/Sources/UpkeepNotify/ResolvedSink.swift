import Foundation
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS
import UpkeepYAML

/// A sink with its secret files read: what the deliverer sends with. Its description is the
/// sink's label; the URL's path and every secret stay out of it.
public struct ResolvedSink: Sendable, CustomStringConvertible {
    public let sink: NotificationSink
    public let url: HTTPURL
    /// The webhook's HMAC key.
    let secret: BearerToken?
    /// ntfy's or Gotify's token.
    let token: BearerToken?
    let trust: TrustRoots

    public var description: String { "\(sink.key) (\(sink.kind.rawValue) \(NotificationSink.redacted(url)))" }

    init(sink: NotificationSink, url: HTTPURL, secret: BearerToken?, token: BearerToken?, trust: TrustRoots) {
        self.sink = sink
        self.url = url
        self.secret = secret
        self.token = token
        self.trust = trust
    }
}

extension NotificationSink {
    /// Reads the sink's files: the URL file, the secret or token (each a regular file without
    /// group or other permissions, at most 4 KiB, printable ASCII), and the CA file. Errors
    /// name the file, line and field, and say what to do; none contains a secret.
    public func load() throws(ConfigError) -> ResolvedSink {
        func failure(_ field: String, _ problem: String) -> ConfigError {
            ConfigError(file: file, line: line, field: "\(self.field).\(field)", problem: problem)
        }
        func readSecret(_ path: String?, _ field: String) throws(ConfigError) -> BearerToken? {
            guard let path else { return nil }
            do {
                return try BearerToken.load(file: path, environment: [:])
            } catch {
                throw failure(field, "\(error)")
            }
        }
        let text: String
        if let url {
            text = url
        } else {
            guard let fromFile = try readSecret(urlFile, "urlFile") else { preconditionFailure("a sink has url or urlFile") }
            text = fromFile.secretText
        }
        let parsed: HTTPURL
        do {
            parsed = try Self.checkedURL(text, allowHTTP: allowHTTP)
        } catch {
            // The URL may be the credential: the problem names the host at most.
            throw failure(url == nil ? "urlFile" : "url", error.problem.replacingOccurrences(of: text, with: "the URL"))
        }
        let trust: TrustRoots
        if let caFile {
            do {
                trust = .certificates(try Certificate.loadChain(pemFile: caFile))
            } catch {
                throw failure("caFile", "cannot read CA certificates from \(caFile): \(error)")
            }
        } else {
            trust = .system
        }
        return ResolvedSink(sink: self, url: parsed, secret: try readSecret(secretFile, "secretFile"), token: try readSecret(tokenFile, "tokenFile"),
                            trust: trust)
    }
}
