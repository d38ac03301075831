import Foundation
import NIOConcurrencyHelpers
import NIOCore
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI

/// A stand-in for GitHub's releases API and downloads and for the k3s channel server, modelled
/// on GitHub's releases API (https://docs.github.com/rest/releases/releases, rate limits:
/// https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api), k3s's release
/// assets and checksum files as k3s's install.sh fetches them (https://get.k3s.io), and the
/// channel server (https://update.k3s.io/v1-release/channels, rancher/channelserver).
///
/// - `GET /repos/{owner}/{repo}/releases?per_page=&page=` newest published first (ties in
///   catalog order), `per_page` capped at 100, `Link` pagination (`next`, `last`, `prev`,
///   `first`), a weak `ETag` and 304 for `If-None-Match` (a 304 costs no rate limit), and
///   `x-ratelimit-*` headers of an hourly window: 60 requests for anonymous callers (all of
///   them share one; they all come from loopback) and 5,000 for each token, as GitHub gives a
///   token its own; drafts only for a request with a token. Exhausted: 403 "API rate limit
///   exceeded" with `x-ratelimit-remaining: 0` until that window's reset.
/// - `GET /repos/{owner}/{repo}/releases/latest` (newest published non-prerelease) and
///   `/releases/tags/{tag}`.
/// - `GET /{owner}/{repo}/releases/download/{tag}/{asset}` answers 302 to `/blobs/<sha256>`,
///   as GitHub redirects to its object store; k3s binaries (fake-k3s scripts) and
///   `sha256sum-<arch>.txt`; with the corruption switch on, binaries no longer match.
/// - `GET /v1-release/channels` and 302 from `/v1-release/channels/<name>`.
/// - The faults of `SandboxFaults` and `ReleaseFaults`, read at every request.
public final class ReleaseCatalog: Sendable {
    public struct Asset: Sendable {
        public var name: String
        public var content: [UInt8]
        public var sha256: String
    }

    public struct Release: Sendable {
        public var owner: String
        public var repo: String
        public var tag: String
        public var prerelease: Bool
        public var draft: Bool
        public var publishedAt: Double
        public var assets: [Asset]

        public init(owner: String, repo: String, tag: String, prerelease: Bool = false, draft: Bool = false, publishedAt: Double,
                    assets: [Asset])
        {
            self.owner = owner
            self.repo = repo
            self.tag = tag
            self.prerelease = prerelease
            self.draft = draft
            self.publishedAt = publishedAt
            self.assets = assets
        }
    }

    /// One request as the server answered it (tests and `sandbox status` read these). A token
    /// is never kept: only the SHA-256 of the `Authorization` header's value.
    public struct ServedRequest: Sendable, Equatable {
        public var path: String
        public var status: Int
        public var authorizationSHA256: String?
    }

    /// One caller's primary rate-limit window.
    struct Window {
        var limit: Int
        var used = 0
        var resetAt: Double
        /// `armedAt` of the rate-limit fault already applied to this window.
        var appliedRateLimit: Double?
    }

    struct ServerState {
        /// Windows by caller: `anonymous`, or the SHA-256 of a token's authorization header.
        var windows: [String: Window] = [:]
        /// Served counts of secondary limits, by the fault's `armedAt`.
        var secondaryServed: [Double: Int] = [:]
        var served: [ServedRequest] = []
    }

    public let releases: [Release]
    /// Non-draft k3s versions, in version order.
    public let k3sVersions: [String]
    let state: NIOLockedValueBox<ServerState>
    let faults: @Sendable () -> SandboxFaults
    /// Requests an hour: anonymous callers together, and each token on its own.
    public static let rateLimit = 60
    public static let tokenRateLimit = 5000
    static let windowsMax = 64
    public static let perPageMax = 100
    static let servedMax = 1000

    /// k3s versions offered around `base` (vX.Y.Z+k3sN): two patches of its minor, two of the
    /// next, one of the one after, and a release candidate of that one.
    public static func k3sVersions(around base: String) -> [String] {
        let core = base.dropFirst().split(separator: "+").first ?? ""
        let numbers = core.split(separator: ".").compactMap { Int($0.prefix { $0.isNumber }) }
        guard numbers.count == 3 else { return [base] }
        let (major, minor, patch) = (numbers[0], numbers[1], numbers[2])
        var versions = [max(0, patch - 2), patch, patch + 2].map { "v\(major).\(minor).\($0)+k3s1" }
        versions += ["v\(major).\(minor + 1).2+k3s1", "v\(major).\(minor + 1).4+k3s1", "v\(major).\(minor + 2).0+k3s1",
                     "v\(major).\(minor + 2).1-rc1+k3s1"]
        if !versions.contains(base) { versions.append(base) }
        return Array(Set(versions)).sorted { K3sVersionOrder.less($0, $1) }
    }

    /// The sandbox's catalog: k3s releases around `k3sBase` (binaries are fake-k3s scripts),
    /// published oldest first two weeks apart, plus a draft of the next patch of the newest
    /// minor; flux2 and longhorn releases, each with a pre-release.
    /// `offered`: k3s versions to publish besides those (a twin offers the target its rehearsal
    /// resolved from the live release source).
    public convenience init(k3sBase: String, offered: [String] = [], hostBinary: String, faults: @escaping @Sendable () -> SandboxFaults,
                            now: Double) {
        let versions = Array(Set(Self.k3sVersions(around: k3sBase) + offered)).sorted { K3sVersionOrder.less($0, $1) }
        var releases: [Release] = []
        for (index, version) in versions.enumerated() {
            releases.append(Self.k3sRelease(version, prerelease: version.contains("-rc"), publishedAt: now - Double(versions.count - index) * 86400 * 14) {
                _ in Array(FakeK3s.script(version: version, hostBinary: hostBinary).utf8)
            })
        }
        if let newest = versions.last(where: { !$0.contains("-") }), let patch = Int(newest.split(separator: ".")[2].prefix { $0.isNumber }) {
            let draft = newest.split(separator: ".").prefix(2).joined(separator: ".") + ".\(patch + 1)+k3s1"
            releases.append(Self.k3sRelease(draft, draft: true, publishedAt: now) { _ in Array(FakeK3s.script(version: draft, hostBinary: hostBinary).utf8) })
        }
        for (index, tag) in ["v2.3.0", "v2.4.0", "v2.5.1", "v2.6.0-rc.1"].enumerated() {
            let install = Array(FluxManifests.install(version: tag).utf8)
            releases.append(Release(owner: "fluxcd", repo: "flux2", tag: tag, prerelease: tag.contains("-"),
                                    publishedAt: now - Double(4 - index) * 86400 * 60, assets: [Self.asset("install.yaml", install)]))
        }
        for (index, tag) in ["v1.6.3", "v1.7.2", "v1.8.0", "v1.9.0-rc1"].enumerated() {
            let manifest = Array("# Longhorn \(tag) manifests (sandbox)\n".utf8)
            releases.append(Release(owner: "longhorn", repo: "longhorn", tag: tag, prerelease: tag.contains("-"),
                                    publishedAt: now - Double(4 - index) * 86400 * 60, assets: [Self.asset("longhorn.yaml", manifest)]))
        }
        self.init(releases: releases, faults: faults, now: now)
    }

    /// A catalog of exactly these releases (tests give real-shaped histories).
    public init(releases: [Release], faults: @escaping @Sendable () -> SandboxFaults, now: Double) {
        self.releases = releases
        k3sVersions = releases.filter { $0.owner == "k3s-io" && $0.repo == "k3s" && !$0.draft }.map(\.tag).sorted { K3sVersionOrder.less($0, $1) }
        self.faults = faults
        state = NIOLockedValueBox(ServerState())
    }

    /// A k3s release as k3s publishes it: per arch the binary (`k3s`, `k3s-arm64`, `k3s-armhf`,
    /// and `k3s-s390x` before v1.28.4+k3s2), its air-gap images (`k3s-airgap-images-<arch>` as
    /// `.tar.zst`, `.tar.gz` and `.tar`, small stand-ins naming their version: `AirGap`), and
    /// `sha256sum-<arch>.txt` (`arm` for armhf) listing the images first and the binary last.
    public static func k3sRelease(_ version: String, prerelease: Bool = false, draft: Bool = false, publishedAt: Double,
                                  binary: (String) -> [UInt8]) -> Release
    {
        var arches = [("amd64", "k3s", "amd64"), ("arm64", "k3s-arm64", "arm64"), ("arm", "k3s-armhf", "arm")]
        if K3sVersionOrder.less(version, "v1.28.4+k3s2") { arches.append(("s390x", "k3s-s390x", "s390x")) }
        var assets: [Asset] = []
        var sums: [(String, [String])] = []
        for (arch, name, sumArch) in arches {
            let content = binary(arch)
            var lines: [String] = []
            for format in AirGap.formats {
                let images = AirGap.tarball(version: version, arch: arch, format: format)
                let imagesName = AirGap.tarballName(arch: arch, format: format)
                assets.append(Self.asset(imagesName, images))
                lines.append("\(SHA256.hex(images))  \(imagesName)")
            }
            assets.append(Self.asset(name, content))
            sums.append((sumArch, lines + ["\(SHA256.hex(content))  \(name)"]))
        }
        for (arch, lines) in sums.sorted(by: { $0.0 < $1.0 }) {
            assets.append(Self.asset("sha256sum-\(arch).txt", Array((lines.joined(separator: "\n") + "\n").utf8)))
        }
        return Release(owner: "k3s-io", repo: "k3s", tag: version, prerelease: prerelease, draft: draft, publishedAt: publishedAt, assets: assets)
    }

    public static func asset(_ name: String, _ content: [UInt8]) -> Asset { Asset(name: name, content: content, sha256: SHA256.hex(content)) }

    /// The requests answered so far (the newest `servedMax`).
    public var requests: [ServedRequest] { state.withLockedValue { $0.served } }

    // MARK: - HTTP

    public func handle(_ request: APIRequest, baseURL: String, now: Double) -> APIResponse {
        let faults = faults()
        if faults.releaseFaults?.hang == true { return .withheld }
        let caller = Self.caller(of: request)
        let response = route(request, caller: caller, baseURL: baseURL, now: now, faults: faults)
        let authorization = caller == Self.anonymous ? nil : caller
        state.withLockedValue { value in
            value.served.append(ServedRequest(path: request.path, status: response.status, authorizationSHA256: authorization))
            if value.served.count > Self.servedMax { value.served.removeFirst(value.served.count - Self.servedMax) }
        }
        return response
    }

    func route(_ request: APIRequest, caller: String, baseURL: String, now: Double, faults: SandboxFaults) -> APIResponse {
        let segments = request.path.split(separator: "/").map(String.init)
        guard request.method == "GET" || request.method == "HEAD" else {
            return githubError(404, "Not Found")
        }
        switch segments.first {
        case "repos" where segments.count >= 4 && segments[3] == "releases":
            return releasesAPI(request, caller: caller, segments: segments, baseURL: baseURL, now: now, faults: faults)
        case "v1-release" where segments.count >= 2 && segments[1] == "channels":
            return channels(request, segments: segments, baseURL: baseURL, faults: faults)
        case "blobs" where segments.count == 2:
            for release in releases where !release.draft {
                if let asset = release.assets.first(where: { $0.sha256 == segments[1] && !faults.dropsAsset($0.name, of: release.tag) }) {
                    return APIResponse(status: 200, contentType: "application/octet-stream", body: bytes(of: asset, faults))
                }
            }
            return githubError(404, "Not Found")
        default:
            // /{owner}/{repo}/releases/download/{tag}/{asset}
            if segments.count == 6, segments[2] == "releases", segments[3] == "download",
               let release = releases.first(where: { $0.owner == segments[0] && $0.repo == segments[1] && $0.tag == segments[4] && !$0.draft }),
               let asset = release.assets.first(where: { $0.name == segments[5] && !faults.dropsAsset($0.name, of: release.tag) })
            {
                return APIResponse(status: 302, contentType: "text/html", body: [], headers: [("Location", "\(baseURL)/blobs/\(asset.sha256)")])
            }
            return githubError(404, "Not Found")
        }
    }

    /// Binaries lose their integrity with the corruption switch on; checksum files never do.
    func bytes(of asset: Asset, _ faults: SandboxFaults) -> [UInt8] {
        guard faults.corruptBinaries, asset.name.hasPrefix("k3s"), !asset.name.hasSuffix(".txt") else { return asset.content }
        var bytes = asset.content
        if !bytes.isEmpty { bytes[bytes.count / 2] ^= 0x20 }
        return bytes
    }

    func rateHeaders(_ window: Window) -> [(String, String)] {
        let remaining = max(0, window.limit - window.used)
        return [("x-ratelimit-limit", String(window.limit)), ("x-ratelimit-remaining", String(remaining)),
         ("x-ratelimit-used", String(window.limit - remaining)), ("x-ratelimit-reset", String(Int(window.resetAt.rounded(.up)))),
         ("x-ratelimit-resource", "core"), ("x-github-api-version-selected", "2022-11-28")]
    }

    func githubError(_ status: Int, _ message: String, headers: [(String, String)] = []) -> APIResponse {
        let body: JSON = ["message": .string(message), "documentation_url": "https://docs.github.com/rest", "status": .string(String(status))]
        return APIResponse(status: status, contentType: "application/json; charset=utf-8", body: body.serialized(), headers: headers)
    }

    /// Where the caller's primary window stands before this request: applies a newly armed
    /// rate-limit fault (the window is used up now and resets `resetSeconds` later), starts a new
    /// window after a reset, and answers a secondary limit while it lasts.
    enum Admission { case refused(APIResponse), admitted }

    func admit(caller: String, now: Double, faults: SandboxFaults) -> Admission {
        state.withLockedValue { value in
            let limit = caller == Self.anonymous ? Self.rateLimit : Self.tokenRateLimit
            var window = value.windows[caller] ?? Window(limit: limit, resetAt: now + 3600)
            if let fault = faults.releaseFaults?.rateLimitReset, window.appliedRateLimit != fault.armedAt {
                window.appliedRateLimit = fault.armedAt
                window.used = window.limit
                window.resetAt = (now + fault.resetSeconds).rounded(.up)
            }
            if now >= window.resetAt && !faults.releasesRateLimited {
                window = Window(limit: limit, resetAt: now + 3600, appliedRateLimit: window.appliedRateLimit)
            }
            // Bounded: a caller beyond the bound replaces the window that resets first.
            if value.windows[caller] == nil, value.windows.count >= Self.windowsMax,
               let oldest = value.windows.min(by: { $0.value.resetAt < $1.value.resetAt })?.key {
                value.windows[oldest] = nil
            }
            value.windows[caller] = window
            if faults.releasesRateLimited || window.used >= window.limit {
                var exhausted = window
                exhausted.used = window.limit
                let who = caller == Self.anonymous ? "127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)"
                    : "user ID 1."
                return .refused(githubError(403, "API rate limit exceeded for \(who)", headers: rateHeaders(exhausted)))
            }
            if let secondary = faults.releaseFaults?.secondaryLimit, value.secondaryServed[secondary.armedAt, default: 0] < secondary.requests {
                value.secondaryServed[secondary.armedAt, default: 0] += 1
                return .refused(githubError(secondary.status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                                            headers: rateHeaders(window) + [("retry-after", String(secondary.retryAfterSeconds))]))
            }
            return .admitted
        }
    }

    /// Counts an answer against the caller's window (a 304 is free) and returns its rate headers.
    func charge(_ status: Int, caller: String) -> [(String, String)] {
        state.withLockedValue { value in
            guard var window = value.windows[caller] else { return [] }
            if status != 304 { window.used = min(window.limit, window.used + 1) }
            value.windows[caller] = window
            return rateHeaders(window)
        }
    }

    /// The window key of anonymous callers.
    static let anonymous = "anonymous"

    /// Whose window a request counts against: a token's own (by the SHA-256 of its header, so
    /// the token itself is never kept), else the anonymous one.
    static func caller(of request: APIRequest) -> String {
        request.headers.first { $0.0 == "authorization" }.map { SHA256.hex(Array($0.1.utf8)) } ?? anonymous
    }

    func releasesAPI(_ request: APIRequest, caller: String, segments: [String], baseURL: String, now: Double, faults: SandboxFaults) -> APIResponse {
        if case .refused(let response) = admit(caller: caller, now: now, faults: faults) { return response }
        let owner = segments[1], repo = segments[2]
        let authorized = caller != Self.anonymous
        let matching = listed(owner: owner, repo: repo, authorized: authorized)
        var body: [UInt8]?
        var headers: [(String, String)] = []
        if matching.isEmpty {
            body = nil
        } else if segments.count == 5 && segments[4] == "latest" {
            body = matching.first { !$0.prerelease && !$0.draft }.map { json($0, baseURL, faults).serialized() }
        } else if segments.count == 6 && segments[4] == "tags" {
            body = matching.first { $0.tag == segments[5] && !$0.draft }.map { json($0, baseURL, faults).serialized() }
        } else if segments.count == 4 {
            let perPage = min(Self.perPageMax, faults.releaseFaults?.pageSizeMax ?? Self.perPageMax,
                              max(1, request.query["per_page"].flatMap(Int.init) ?? 30))
            let page = max(1, request.query["page"].flatMap(Int.init) ?? 1)
            let pages = max(1, (matching.count + perPage - 1) / perPage)
            let slice = matching.dropFirst((page - 1) * perPage).prefix(perPage)
            var links: [String] = []
            let base = "\(baseURL)/repos/\(owner)/\(repo)/releases?per_page=\(perPage)"
            if page < pages {
                links.append("<\(base)&page=\(page + 1)>; rel=\"next\"")
                links.append("<\(base)&page=\(pages)>; rel=\"last\"")
            }
            if page > 1 {
                links.append("<\(base)&page=\(page - 1)>; rel=\"prev\"")
                links.append("<\(base)&page=1>; rel=\"first\"")
            }
            if !links.isEmpty { headers.append(("Link", links.joined(separator: ", "))) }
            body = JSON.array(slice.map { json($0, baseURL, faults) }).serialized()
        }
        guard let body else { return githubError(404, "Not Found", headers: charge(404, caller: caller)) }
        let answer = answer(body, to: request, corrupt: faults.releaseFaults?.corrupts("\(owner)/\(repo)") == true)
        return APIResponse(status: answer.status, contentType: "application/json; charset=utf-8", body: answer.body,
                           headers: charge(answer.status, caller: caller) + headers + answer.headers)
    }

    /// Releases of one repository as GitHub lists them: newest published first (ties in catalog
    /// order); drafts only to a request with a token (GitHub shows them to those with push access).
    func listed(owner: String, repo: String, authorized: Bool) -> [Release] {
        releases.enumerated()
            .filter { $0.element.owner == owner && $0.element.repo == repo && (authorized || !$0.element.draft) }
            .sorted { $0.element.publishedAt != $1.element.publishedAt ? $0.element.publishedAt > $1.element.publishedAt : $0.offset < $1.offset }
            .map(\.element)
    }

    /// A repository's whole release list as the API lists it without a token (a mirror's file).
    public func releaseListJSON(owner: String, repo: String, baseURL: String) -> JSON {
        .array(listed(owner: owner, repo: repo, authorized: false).map { json($0, baseURL, faults()) })
    }

    /// A 200 with a weak ETag, or 304 when `If-None-Match` names it; with the corrupt-JSON fault,
    /// the first half of the body and no ETag (an answer cut short looks like this).
    func answer(_ body: [UInt8], to request: APIRequest, corrupt: Bool) -> (status: Int, body: [UInt8], headers: [(String, String)]) {
        if corrupt { return (200, Array(body.prefix(max(1, body.count / 2))), []) }
        let etag = "W/\"\(String(StableHash.fnv1a(String(decoding: body, as: UTF8.self)), radix: 16))\""
        if request.headers.first(where: { $0.0 == "if-none-match" })?.1 == etag { return (304, [], [("ETag", etag)]) }
        return (200, body, [("ETag", etag)])
    }

    func json(_ release: Release, _ baseURL: String, _ faults: SandboxFaults) -> JSON {
        let escapedTag = release.tag.replacingOccurrences(of: "+", with: "%2B")
        return [
            "tag_name": .string(release.tag), "name": .string(release.tag), "draft": .bool(release.draft), "prerelease": .bool(release.prerelease),
            "published_at": release.draft ? .null : .string(KubeTime.format(release.publishedAt)), "created_at": .string(KubeTime.format(release.publishedAt)),
            "html_url": .string("\(baseURL)/\(release.owner)/\(release.repo)/releases/tag/\(escapedTag)"),
            "id": .int(Int64(StableHash.fnv1a("\(release.owner)/\(release.repo)/\(release.tag)") % 1_000_000_000)),
            "assets": .array(release.assets.filter { !faults.dropsAsset($0.name, of: release.tag) }.map { asset in
                ["name": .string(asset.name), "size": .int(Int64(asset.content.count)), "state": "uploaded",
                 "content_type": "application/octet-stream", "digest": Self.digest(of: asset, faults),
                 "browser_download_url": .string("\(baseURL)/\(release.owner)/\(release.repo)/releases/download/\(escapedTag)/\(asset.name)")]
            }),
        ]
    }

    /// `assets[].digest` as GitHub reports it (https://docs.github.com/en/rest/releases/assets),
    /// or as the digest faults make it: null, or another digest for a k3s binary.
    static func digest(of asset: Asset, _ faults: SandboxFaults) -> JSON {
        if faults.releaseFaults?.noDigests == true { return .null }
        if faults.releaseFaults?.wrongDigests == true, isK3sBinary(asset.name) {
            return .string("sha256:\(SHA256.hex(asset.content + Array("# not what was uploaded\n".utf8)))")
        }
        return .string("sha256:\(asset.sha256)")
    }

    /// `k3s`, `k3s-arm64`, `k3s-armhf`, `k3s-s390x`: not the images tarballs, not checksum files.
    static func isK3sBinary(_ name: String) -> Bool { name == "k3s" || (name.hasPrefix("k3s-") && !name.contains(".") && !name.hasPrefix("k3s-airgap")) }

    /// stable: newest of the second-newest minor; latest: newest non-prerelease; testing: newest
    /// including release candidates; v1.NN: newest of each minor.
    public func channelVersions() -> [(String, String)] {
        let stableOrdered = k3sVersions.filter { !$0.contains("-") }
        guard let latest = stableOrdered.last else { return [] }
        let minors = Array(Set(stableOrdered.map(Self.minor))).sorted { K3sVersionOrder.less("v\($0).0", "v\($1).0") }
        let stableMinor = minors.count >= 2 ? minors[minors.count - 2] : minors.last!
        let stable = stableOrdered.last { Self.minor($0) == stableMinor } ?? latest
        var channels = [("stable", stable), ("latest", latest), ("testing", k3sVersions.last ?? latest)]
        for minor in minors { channels.append(("v\(minor)", stableOrdered.last { Self.minor($0) == minor }!)) }
        return channels
    }

    static func minor(_ version: String) -> String {
        version.dropFirst().split(separator: ".").prefix(2).joined(separator: ".")
    }

    /// The channel server's collection (a mirror's `channels.json` too).
    public func channelListJSON(baseURL: String) -> JSON {
        let data: [JSON] = channelVersions().map { name, version in
            var entry: JSON = ["id": .string(name), "type": "channel", "links": ["self": .string("\(baseURL)/v1-release/channels/\(name)")],
                               "name": .string(name), "latest": .string(version)]
            if name == "latest" {
                entry["latestRegexp"] = ".*"
                entry["excludeRegexp"] = "^[^+]+-"
            }
            return entry
        }
        return ["type": "collection", "links": ["self": .string("\(baseURL)/v1-release/channels")], "actions": [:],
                "resourceType": "channels", "data": .array(data)]
    }

    func channels(_ request: APIRequest, segments: [String], baseURL: String, faults: SandboxFaults) -> APIResponse {
        if segments.count == 2 {
            let answer = answer(channelListJSON(baseURL: baseURL).serialized(), to: request, corrupt: faults.releaseFaults?.corrupts("channels") == true)
            return APIResponse(status: answer.status, body: answer.body, headers: answer.headers)
        }
        guard segments.count == 3, let version = channelVersions().first(where: { $0.0 == segments[2] })?.1 else {
            return APIResponse(status: 404, body: Array("{\"type\":\"error\",\"status\":\"404\",\"message\":\"not found\"}".utf8))
        }
        return APIResponse(status: 302, contentType: "text/html", body: [],
                           headers: [("Location", "\(baseURL)/k3s-io/k3s/releases/tag/\(version)")])
    }
}

/// The release server on a port: a `ReleaseCatalog` behind `HTTPServer`, answering with
/// its own address in links and redirects (what `upkeep sandbox up` runs, and tests too).
public final class ReleaseServer: Sendable {
    public let catalog: ReleaseCatalog
    public let http: HTTPServer
    public let baseURL: String

    init(catalog: ReleaseCatalog, http: HTTPServer, baseURL: String) {
        self.catalog = catalog
        self.http = http
        self.baseURL = baseURL
    }

    public static func start(catalog: ReleaseCatalog, host: String, port: Int = 0, group: any EventLoopGroup) async throws -> ReleaseServer {
        let base = NIOLockedValueBox("")
        let http = try await HTTPServer.start(host: host, port: port, group: group, responder: .nonBlocking { request in
            catalog.handle(request, baseURL: base.withLockedValue { $0 }, now: Date().timeIntervalSince1970)
        })
        let url = "http://\(host):\(http.port)"
        base.withLockedValue { $0 = url }
        return ReleaseServer(catalog: catalog, http: http, baseURL: url)
    }

    public func close() async { await http.close() }
}

/// Orders k3s versions as semver: a release candidate before its release.
public enum K3sVersionOrder {
    static func key(_ version: String) -> ([Int], Int, String) {
        let core = version.hasPrefix("v") ? String(version.dropFirst()) : version
        let withoutBuild = core.split(separator: "+").first.map(String.init) ?? core
        let parts = withoutBuild.split(separator: "-", maxSplits: 1)
        let numbers = parts[0].split(separator: ".").map { Int($0) ?? 0 }
        let build = Int(core.split(separator: "+").dropFirst().first?.filter(\.isNumber) ?? "") ?? 0
        return (numbers, parts.count > 1 ? 0 : 1, parts.count > 1 ? String(parts[1]) + "#\(build)" : "#\(build)")
    }

    public static func less(_ a: String, _ b: String) -> Bool {
        let (x, y) = (key(a), key(b))
        if x.0 != y.0 { return x.0.lexicographicallyPrecedes(y.0) }
        if x.1 != y.1 { return x.1 < y.1 }
        return x.2 < y.2
    }
}
