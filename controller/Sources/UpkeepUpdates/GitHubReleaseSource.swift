import NIOHTTP1
import Synchronization
import UpkeepCore
import UpkeepHTTP
import UpkeepKube

/// Releases from the GitHub REST API and channels from the k3s channel server.
///
/// - Requests carry `Accept: application/vnd.github+json` and `X-GitHub-Api-Version`, and the
///   token (when given) only towards the API's origin; a redirect elsewhere drops it.
/// - Release lists are paged (`per_page=100`, following `Link: rel="next"` only within the
///   API's origin) up to `pagesMax` pages, and stop early after a page with nothing newer
///   than the oldest installed version.
/// - GETs go through the client's ETag cache, so an unchanged list costs a 304.
/// - Channel versions come from the channel server's 302, which is read, never followed.
public final class GitHubReleaseSource: ReleaseSource {
    public struct Endpoints: Sendable, Equatable {
        public var api: HTTPURL
        public var channelServer: HTTPURL

        public init(api: HTTPURL, channelServer: HTTPURL) {
            self.api = api
            self.channelServer = channelServer
        }

        public static let github = Endpoints(api: HTTPURL(scheme: .https, host: "api.github.com"),
                                             channelServer: HTTPURL(scheme: .https, host: "update.k3s.io"))
    }

    public static let pageSize = 100
    public let endpoints: Endpoints
    public let pagesMax: Int
    private let client: HTTPClient
    private let token: BearerToken?
    private let lastRateLimit = Mutex<RateLimitStatus?>(nil)

    public init(client: HTTPClient, endpoints: Endpoints = .github, token: BearerToken? = nil, pagesMax: Int = 10) {
        self.client = client
        self.endpoints = endpoints
        self.token = token
        self.pagesMax = max(1, pagesMax)
    }

    public var description: String { "GitHub (\(endpoints.api)) and the k3s channel server (\(endpoints.channelServer))" }

    public var rateLimit: RateLimitStatus? { lastRateLimit.withLock { $0 } }

    public func channels() async throws -> [K3sChannel] {
        let url = endpoints.channelServer.appending(path: "v1-release/channels")
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: "application/json")
        let response = try await fetch(url, headers: headers, cache: .etag)
        try Self.expectOK(response, source: url.description)
        return try ChannelParser.channels(response.body, source: url.description)
    }

    public func channel(named name: String) async throws -> K3sVersion {
        guard ChannelParser.isChannelName(name) else {
            throw ReleaseSourceError(source: endpoints.channelServer.description, problem: "\"\(name)\" is not a channel name (stable, latest, v1.33, …)")
        }
        let url = endpoints.channelServer.appending(path: "v1-release/channels/\(name)")
        let response = try await fetch(url, headers: [:], cache: .none)
        if response.status == 404 {
            throw ReleaseSourceError(source: url.description, problem: "no channel named \(name) (HTTP 404)")
        }
        return try ChannelParser.version(fromRedirect: response.status, location: response.headers.first(name: "location"), source: url.description)
    }

    public func releases(of component: Component, oldestInstalled: K3sVersion?) async throws -> ReleaseList {
        var next: HTTPURL? = endpoints.api.appending(path: "repos/\(component.repository)/releases")
            .appending(query: [("per_page", String(Self.pageSize))])
        var releases: [Release] = []
        var seen = Set<String>()
        var pages = 0
        while let url = next {
            guard pages < pagesMax else { return ReleaseList(releases: releases, pagesRead: pages, truncated: true) }
            let response = try await fetch(url, headers: githubHeaders(), cache: .etag)
            try Self.expectOK(response, source: url.description)
            let page = try ReleaseParser.releases(response.body, component: component, source: url.description)
            pages += 1
            // Pages can shift while being read (a release published meanwhile): keep the first copy.
            for release in page where seen.insert(release.tag).inserted { releases.append(release) }
            next = try nextPage(response, source: url.description)
            if let oldestInstalled, pages > 0, !page.isEmpty, page.allSatisfy({ $0.version <= oldestInstalled }) { break }
        }
        return ReleaseList(releases: releases, pagesRead: pages, truncated: false)
    }

    public func compatibilityEntries() async throws -> [CompatibilityEntry]? { nil }

    /// One release by its tag (`GET /repos/{owner}/{repo}/releases/tags/{tag}`,
    /// https://docs.github.com/en/rest/releases/releases#get-a-release-by-tag-name), through the
    /// ETag cache; its assets carry the digests GitHub computed on upload
    /// (https://docs.github.com/en/rest/releases/assets).
    public func release(of component: Component, tag: String) async throws -> Release {
        let url = endpoints.api.appending(path: "repos/\(component.repository)/releases/tags/\(HTTPURL.percentEncode(tag))")
        let response = try await fetch(url, headers: githubHeaders(), cache: .etag)
        try Self.expectOK(response, source: url.description)
        let json = try AnswerReader.parse(response.body, source: url.description)
        guard let release = try ReleaseParser.release(json, component: component, path: "", source: url.description), release.tag == tag else {
            throw AnswerError(source: url.description, problem: "the answer is not release \(tag)")
        }
        return release
    }

    // MARK: - Exchanges

    private func githubHeaders() -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: "application/vnd.github+json")
        headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28")
        if let token { headers.add(name: "Authorization", value: token.authorizationHeader) }
        return headers
    }

    private func fetch(_ url: HTTPURL, headers: HTTPHeaders, cache: CachePolicy) async throws -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try await client.send(HTTPRequest(url: url, headers: headers, redirects: .none, cache: cache))
        } catch let error as HTTPClientError {
            throw ReleaseSourceError(source: url.description, problem: error.description)
        }
        if response.rateLimit.remaining != nil { lastRateLimit.withLock { $0 = response.rateLimit } }
        return response
    }

    static func expectOK(_ response: HTTPResponse, source: String) throws {
        guard response.status != 200 else { return }
        let message = Self.serverMessage(response)
        let problem: String = switch response.status {
        case 401: "the token was refused (HTTP 401\(message)); check GITHUB_TOKEN or the token file"
        case 403: "access refused (HTTP 403\(message))"
        case 404: "not found (HTTP 404\(message))"
        default: "unexpected HTTP \(response.status)\(message)"
        }
        throw ReleaseSourceError(source: source, problem: problem)
    }

    /// `: <message>` from a GitHub error body, or nothing.
    static func serverMessage(_ response: HTTPResponse) -> String {
        guard let text = try? AnswerReader.parse(response.body, source: ""), let message = text["message"]?.string else { return "" }
        return ": " + String(message.prefix(200)).replacingControlCharacters
    }

    /// The `rel="next"` URL of a `Link` header, refused when it leaves the API's origin.
    private func nextPage(_ response: HTTPResponse, source: String) throws -> HTTPURL? {
        guard let link = response.headers.first(name: "link") else { return nil }
        guard let target = LinkHeader.target(of: link, relation: "next") else { return nil }
        let url: HTTPURL
        do { url = try response.url.resolving(target) } catch {
            throw AnswerError(source: source, location: "Link", problem: "next page \"\(target.prefix(200))\" is not a URL")
        }
        guard url.origin == endpoints.api.origin else {
            throw AnswerError(source: source, location: "Link", problem: "next page \(url) leaves \(endpoints.api.origin)")
        }
        return url
    }
}

/// RFC 8288 `Link` headers as GitHub writes them: `<url>; rel="next", <url>; rel="last"`.
public enum LinkHeader {
    public static func target(of header: String, relation: String) -> String? {
        for part in header.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimming(" \t") }
            guard let first = pieces.first, first.hasPrefix("<"), first.hasSuffix(">") else { continue }
            let relations = pieces.dropFirst().compactMap { parameter -> [Substring]? in
                let pair = parameter.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].trimming(" \t").lowercased() == "rel" else { return nil }
                return pair[1].trimming(" \t\"").split(separator: " ")
            }.flatMap { $0 }
            if relations.contains(where: { $0.lowercased() == relation }) { return String(first.dropFirst().dropLast()) }
        }
        return nil
    }
}

extension StringProtocol {
    func trimming(_ set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
