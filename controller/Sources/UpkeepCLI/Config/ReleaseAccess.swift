import Foundation
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS
import UpkeepUpdates

/// How to reach releases: GitHub and the channel server, or a mirror; shared by `upkeep check`,
/// `plan` and `apply` so they read the same versions the same way.
struct ReleaseAccess {
    var githubAPI: String
    var channelServer: String
    var mirror: String?
    var caFile: String?
    var githubTokenFile: String?
    var timeoutSeconds: Double
    var userAgent: String
    /// `releases.insecure`: http:// sources allowed (and warned about).
    var insecure: Bool

    init(githubAPI: String, channelServer: String, mirror: String?, caFile: String?, githubTokenFile: String?,
         timeoutSeconds: Double, userAgent: String, insecure: Bool = false) {
        self.githubAPI = githubAPI
        self.channelServer = channelServer
        self.mirror = mirror
        self.caFile = caFile
        self.githubTokenFile = githubTokenFile
        self.timeoutSeconds = timeoutSeconds
        self.userAgent = userAgent
        self.insecure = insecure
    }

    init(_ releases: ControllerConfig.Releases, timeoutSeconds: Double = 30, userAgent: String) {
        self.init(githubAPI: releases.githubAPI, channelServer: releases.channelServer, mirror: releases.mirror, caFile: releases.caFile,
                  githubTokenFile: releases.githubTokenFile, timeoutSeconds: timeoutSeconds, userAgent: userAgent, insecure: releases.insecure)
    }

    /// Refuses an http:// source without `insecure`; warns about one with it (ReleaseTransport).
    func checkTransport(_ sources: [(setting: String, url: String)]) throws {
        try ReleaseTransport.check(sources, insecure: insecure, override: "releases.insecure: true in upkeep.yaml (or --insecure for upkeep check)")
    }

    /// An HTTP client trusting the system store (or `caFile`), caching by ETag in the state directory.
    func makeHTTPClient(stateDirectory: String) throws -> HTTPClient {
        let trust: TrustRoots
        if let caFile {
            do {
                trust = .certificates(try Certificate.loadChain(pemFile: caFile))
            } catch {
                throw CheckConfigurationError(description: "cannot read CA certificates from \(caFile): \(error)")
            }
        } else {
            trust = .system
        }
        let configuration = HTTPClient.Configuration(responseTimeoutSeconds: timeoutSeconds, userAgent: userAgent)
        let cache: ETagCache
        do { cache = try ETagCache(directory: "\(stateDirectory)/http-cache") } catch {
            throw CheckConfigurationError(description: "cannot create the HTTP cache in \(stateDirectory): \(error.localizedDescription)")
        }
        return try HTTPClient(configuration: configuration, trust: trust, cache: cache)
    }

    func makeSource(client: HTTPClient) throws -> any ReleaseSource {
        if let mirror {
            if mirror.hasPrefix("http://") || mirror.hasPrefix("https://") {
                try checkTransport([("mirror", mirror)])
                return MirrorReleaseSource(location: .url(try url(mirror, setting: "mirror")), client: client)
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: mirror, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CheckConfigurationError(description: "the mirror \(mirror) is neither a directory nor an http(s) URL")
            }
            return MirrorReleaseSource(location: .directory(mirror), client: nil)
        }
        return try makeGitHubSource(client: client)
    }

    /// GitHub's releases API and the channel server, with the token when one is configured.
    func makeGitHubSource(client: HTTPClient) throws -> GitHubReleaseSource {
        try checkTransport([("github-api", githubAPI), ("channel-server", channelServer)])
        let token = try BearerToken.load(file: githubTokenFile)
        let endpoints = GitHubReleaseSource.Endpoints(api: try url(githubAPI, setting: "github-api"),
                                                      channelServer: try url(channelServer, setting: "channel-server"))
        return GitHubReleaseSource(client: client, endpoints: endpoints, token: token)
    }

    private func url(_ text: String, setting: String) throws -> HTTPURL {
        do { return try HTTPURL(text) } catch { throw CheckConfigurationError(description: "\(setting): \(error)") }
    }

    /// Creates the state directory (0700) or says which setting to change.
    static func ensureStateDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CheckConfigurationError(description: "cannot create the state directory \(path) (\(error.localizedDescription)); choose another with --state-dir or stateDir in upkeep.yaml")
        }
    }
}
