import Foundation
import NIOConcurrencyHelpers
import UpkeepKube

/// A stand-in for GitHub's releases API and downloads and for the k3s channel server.
///
/// - `GET /repos/{owner}/{repo}/releases?per_page=&page=` with `Link` pagination and
///   `x-ratelimit-*` headers; with the rate-limit switch on, 403 and `x-ratelimit-remaining: 0`.
/// - `GET /repos/{owner}/{repo}/releases/latest` and `/releases/tags/{tag}`.
/// - `GET /{owner}/{repo}/releases/download/{tag}/{asset}` answers 302 to `/blobs/<sha256>`,
///   as GitHub redirects to its object store; k3s binaries (fake-k3s scripts) and
///   `sha256sum-<arch>.txt`; with the corruption switch on, binaries no longer match.
/// - `GET /v1-release/channels` and 302 from `/v1-release/channels/<name>`.
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
        public var publishedAt: Double
        public var assets: [Asset]
    }

    public let releases: [Release]
    public let k3sVersions: [String]
    let state: NIOLockedValueBox<(used: Int, resetAt: Double)>
    let faults: @Sendable () -> SandboxFaults
    public static let rateLimit = 60

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

    public init(k3sBase: String, hostBinary: String, faults: @escaping @Sendable () -> SandboxFaults, now: Double) {
        let versions = Self.k3sVersions(around: k3sBase)
        k3sVersions = versions
        var releases: [Release] = []
        for (index, version) in versions.enumerated() {
            let script = Array(FakeK3s.script(version: version, hostBinary: hostBinary).utf8)
            var assets: [Asset] = []
            var sums: [String: [String]] = [:]
            for (arch, binary, sumArch) in [("amd64", "k3s", "amd64"), ("arm64", "k3s-arm64", "arm64"), ("arm", "k3s-armhf", "arm")] {
                let images = Array("airgap images for \(version) \(arch)\n".utf8)
                let imagesName = "k3s-airgap-images-\(arch).tar.gz"
                assets.append(Self.asset(imagesName, images))
                assets.append(Self.asset(binary, script))
                sums[sumArch] = ["\(Self.sha256(images))  \(imagesName)", "\(Self.sha256(script))  \(binary)"]
            }
            for (arch, lines) in sums.sorted(by: { $0.key < $1.key }) {
                assets.append(Self.asset("sha256sum-\(arch).txt", Array((lines.joined(separator: "\n") + "\n").utf8)))
            }
            releases.append(Release(owner: "k3s-io", repo: "k3s", tag: version, prerelease: version.contains("-rc"),
                                    publishedAt: now - Double(versions.count - index) * 86400 * 14, assets: assets))
        }
        for (index, tag) in ["v2.3.0", "v2.4.0", "v2.5.1"].enumerated() {
            let install = Array("# Flux \(tag) install manifests (sandbox)\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n".utf8)
            releases.append(Release(owner: "fluxcd", repo: "flux2", tag: tag, prerelease: false,
                                    publishedAt: now - Double(3 - index) * 86400 * 60, assets: [Self.asset("install.yaml", install)]))
        }
        for (index, tag) in ["v1.6.3", "v1.7.2", "v1.8.0"].enumerated() {
            let manifest = Array("# Longhorn \(tag) manifests (sandbox)\n".utf8)
            releases.append(Release(owner: "longhorn", repo: "longhorn", tag: tag, prerelease: false,
                                    publishedAt: now - Double(3 - index) * 86400 * 60, assets: [Self.asset("longhorn.yaml", manifest)]))
        }
        self.releases = releases
        self.faults = faults
        state = NIOLockedValueBox((0, now + 3600))
    }

    static func asset(_ name: String, _ content: [UInt8]) -> Asset { Asset(name: name, content: content, sha256: sha256(content)) }

    static func sha256(_ bytes: [UInt8]) -> String { SHA256.hex(bytes) }

    // MARK: - HTTP

    public func handle(_ request: APIRequest, baseURL: String, now: Double) -> APIResponse {
        let segments = request.path.split(separator: "/").map(String.init)
        guard request.method == "GET" || request.method == "HEAD" else {
            return githubError(404, "Not Found")
        }
        switch segments.first {
        case "repos" where segments.count >= 4 && segments[3] == "releases":
            return releasesAPI(segments: segments, query: request.query, baseURL: baseURL, now: now)
        case "v1-release" where segments.count >= 2 && segments[1] == "channels":
            return channels(segments: segments, baseURL: baseURL)
        case "blobs" where segments.count == 2:
            for release in releases {
                if let asset = release.assets.first(where: { $0.sha256 == segments[1] }) {
                    return APIResponse(status: 200, contentType: "application/octet-stream", body: served(asset))
                }
            }
            return githubError(404, "Not Found")
        default:
            // /{owner}/{repo}/releases/download/{tag}/{asset}
            if segments.count == 6, segments[2] == "releases", segments[3] == "download",
               let release = releases.first(where: { $0.owner == segments[0] && $0.repo == segments[1] && $0.tag == segments[4] }),
               let asset = release.assets.first(where: { $0.name == segments[5] })
            {
                return APIResponse(status: 302, contentType: "text/html", body: [], headers: [("Location", "\(baseURL)/blobs/\(asset.sha256)")])
            }
            return githubError(404, "Not Found")
        }
    }

    /// Binaries lose their integrity with the corruption switch on; checksum files never do.
    func served(_ asset: Asset) -> [UInt8] {
        guard faults().corruptBinaries, asset.name.hasPrefix("k3s"), !asset.name.hasSuffix(".txt") else { return asset.content }
        var bytes = asset.content
        if !bytes.isEmpty { bytes[bytes.count / 2] ^= 0x20 }
        return bytes
    }

    func rateHeaders(remaining: Int, resetAt: Double) -> [(String, String)] {
        [("x-ratelimit-limit", String(Self.rateLimit)), ("x-ratelimit-remaining", String(remaining)),
         ("x-ratelimit-used", String(Self.rateLimit - remaining)), ("x-ratelimit-reset", String(Int(resetAt))),
         ("x-ratelimit-resource", "core"), ("x-github-api-version-selected", "2022-11-28")]
    }

    func githubError(_ status: Int, _ message: String, headers: [(String, String)] = []) -> APIResponse {
        let body: JSON = ["message": .string(message), "documentation_url": "https://docs.github.com/rest", "status": .string(String(status))]
        return APIResponse(status: status, contentType: "application/json; charset=utf-8", body: body.serialized(), headers: headers)
    }

    func releasesAPI(segments: [String], query: [String: String], baseURL: String, now: Double) -> APIResponse {
        let (remaining, resetAt): (Int, Double) = state.withLockedValue { value in
            if now >= value.resetAt { value = (0, now + 3600) }
            if !faults().releasesRateLimited && value.used < Self.rateLimit { value.used += 1 }
            return (Self.rateLimit - value.used, value.resetAt)
        }
        if faults().releasesRateLimited || remaining <= 0 {
            return githubError(403, "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit.)",
                               headers: rateHeaders(remaining: 0, resetAt: resetAt))
        }
        let headers = rateHeaders(remaining: remaining, resetAt: resetAt)
        let owner = segments[1], repo = segments[2]
        let matching = releases.filter { $0.owner == owner && $0.repo == repo }.sorted { $0.publishedAt > $1.publishedAt }
        guard !matching.isEmpty else { return githubError(404, "Not Found", headers: headers) }
        if segments.count == 5 && segments[4] == "latest" {
            guard let latest = matching.first(where: { !$0.prerelease }) else { return githubError(404, "Not Found", headers: headers) }
            return APIResponse(status: 200, contentType: "application/json; charset=utf-8", body: json(latest, baseURL).serialized(), headers: headers)
        }
        if segments.count == 6 && segments[4] == "tags" {
            guard let release = matching.first(where: { $0.tag == segments[5] }) else { return githubError(404, "Not Found", headers: headers) }
            return APIResponse(status: 200, contentType: "application/json; charset=utf-8", body: json(release, baseURL).serialized(), headers: headers)
        }
        guard segments.count == 4 else { return githubError(404, "Not Found", headers: headers) }
        let perPage = min(100, max(1, query["per_page"].flatMap(Int.init) ?? 30))
        let page = max(1, query["page"].flatMap(Int.init) ?? 1)
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
        var allHeaders = headers
        if !links.isEmpty { allHeaders.append(("Link", links.joined(separator: ", "))) }
        return APIResponse(status: 200, contentType: "application/json; charset=utf-8",
                           body: JSON.array(slice.map { json($0, baseURL) }).serialized(), headers: allHeaders)
    }

    func json(_ release: Release, _ baseURL: String) -> JSON {
        let escapedTag = release.tag.replacingOccurrences(of: "+", with: "%2B")
        return [
            "tag_name": .string(release.tag), "name": .string(release.tag), "draft": false, "prerelease": .bool(release.prerelease),
            "published_at": .string(KubeTime.format(release.publishedAt)), "created_at": .string(KubeTime.format(release.publishedAt)),
            "html_url": .string("\(baseURL)/\(release.owner)/\(release.repo)/releases/tag/\(escapedTag)"),
            "id": .int(Int64(StableHash.fnv1a("\(release.owner)/\(release.repo)/\(release.tag)") % 1_000_000_000)),
            "assets": .array(release.assets.map { asset in
                ["name": .string(asset.name), "size": .int(Int64(asset.content.count)), "state": "uploaded",
                 "content_type": "application/octet-stream", "digest": .string("sha256:\(asset.sha256)"),
                 "browser_download_url": .string("\(baseURL)/\(release.owner)/\(release.repo)/releases/download/\(escapedTag)/\(asset.name)")]
            }),
        ]
    }

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

    func channels(segments: [String], baseURL: String) -> APIResponse {
        let channels = channelVersions()
        if segments.count == 2 {
            let data: [JSON] = channels.map { name, version in
                var entry: JSON = ["id": .string(name), "type": "channel", "links": ["self": .string("\(baseURL)/v1-release/channels/\(name)")],
                                   "name": .string(name), "latest": .string(version)]
                if name == "latest" {
                    entry["latestRegexp"] = ".*"
                    entry["excludeRegexp"] = "^[^+]+-"
                }
                return entry
            }
            let body: JSON = ["type": "collection", "links": ["self": .string("\(baseURL)/v1-release/channels")], "actions": [:],
                              "resourceType": "channels", "data": .array(data)]
            return APIResponse(status: 200, body: body.serialized())
        }
        guard segments.count == 3, let version = channels.first(where: { $0.0 == segments[2] })?.1 else {
            return APIResponse(status: 404, body: Array("{\"type\":\"error\",\"status\":\"404\",\"message\":\"not found\"}".utf8))
        }
        return APIResponse(status: 302, contentType: "text/html", body: [],
                           headers: [("Location", "\(baseURL)/k3s-io/k3s/releases/tag/\(version)")])
    }
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
