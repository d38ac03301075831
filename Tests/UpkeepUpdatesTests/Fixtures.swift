import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import UpkeepCore
import UpkeepKube
import UpkeepSandbox
import UpkeepUpdates

/// GitHub-shaped release answers built the way the reference shows them
/// (`/work/shared/reference/k3s-longhorn-flux.md`, "GitHub releases API" and "Release assets").
enum ReleaseFixture {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    static func asset(_ tag: String, _ name: String, base: String = "https://github.com") -> JSON {
        let encodedTag = tag.replacingOccurrences(of: "+", with: "%2B")
        return ["name": .string(name), "size": 440, "state": "uploaded", "digest": .string(digest), "content_type": "application/octet-stream",
                "browser_download_url": .string("\(base)/k3s-io/k3s/releases/download/\(encodedTag)/\(name)")]
    }

    /// k3s assets for every arch except those listed; s390x only before v1.28.4+k3s2.
    static func k3sAssets(_ tag: String, without: Set<String> = []) -> [JSON] {
        var names = ["k3s", "k3s-arm64", "k3s-armhf", "sha256sum-amd64.txt", "sha256sum-arm64.txt", "sha256sum-arm.txt",
                     "k3s-airgap-images-amd64.tar.zst"]
        if let version = try? K3sVersion(tag), version < (try! K3sVersion("v1.28.4+k3s2")) {
            names += ["k3s-s390x", "sha256sum-s390x.txt"]
        }
        return names.filter { !without.contains($0) }.map { asset(tag, $0) }
    }

    static func release(_ tag: String, published: String, prerelease: Bool = false, draft: Bool = false, assets: [JSON] = []) -> JSON {
        ["tag_name": .string(tag), "name": .string(tag), "draft": .bool(draft), "prerelease": .bool(prerelease),
         "published_at": draft ? .null : .string(published), "created_at": .string(published), "assets": .array(assets),
         "html_url": .string("https://github.com/x/y/releases/tag/\(tag)"), "id": 1, "body": "notes"]
    }

    /// k3s releases, newest published first, several minors interleaved as k3s ships them.
    /// v1.32.3+k3s1 lacks k3s-armhf; v1.32.0-rc1+k3s1 is a pre-release; v1.34.2+k3s1 a draft.
    static let k3s: [JSON] = [
        release("v1.34.2+k3s1", published: "2025-11-01T00:00:00Z", draft: true, assets: k3sAssets("v1.34.2+k3s1")),
        release("v1.34.1+k3s1", published: "2025-10-01T00:00:00Z", assets: k3sAssets("v1.34.1+k3s1")),
        release("v1.33.5+k3s1", published: "2025-10-01T00:00:00Z", assets: k3sAssets("v1.33.5+k3s1")),
        release("v1.32.3+k3s1", published: "2025-10-01T00:00:00Z", assets: k3sAssets("v1.32.3+k3s1", without: ["k3s-armhf"])),
        release("v1.33.4+k3s1", published: "2025-08-20T12:00:00Z", assets: k3sAssets("v1.33.4+k3s1")),
        release("v1.32.1+k3s1", published: "2025-08-20T12:00:00Z", assets: k3sAssets("v1.32.1+k3s1")),
        release("v1.31.4+k3s1", published: "2025-08-20T12:00:00Z", assets: k3sAssets("v1.31.4+k3s1")),
        release("v1.32.0-rc1+k3s1", published: "2025-06-01T00:00:00Z", prerelease: true, assets: k3sAssets("v1.32.0-rc1+k3s1")),
        release("v1.31.2+k3s1", published: "2025-05-01T00:00:00Z", assets: k3sAssets("v1.31.2+k3s1")),
        release("v1.30.8+k3s1", published: "2025-05-01T00:00:00Z", assets: k3sAssets("v1.30.8+k3s1")),
        release("v1.30.6+k3s1", published: "2025-03-01T00:00:00Z", assets: k3sAssets("v1.30.6+k3s1")),
        release("v1.29.9+k3s1", published: "2025-03-01T00:00:00Z", assets: k3sAssets("v1.29.9+k3s1")),
        release("v1.30.4+k3s1", published: "2025-01-01T00:00:00Z", assets: k3sAssets("v1.30.4+k3s1")),
        release("v1.29.8+k3s1", published: "2025-01-01T00:00:00Z", assets: k3sAssets("v1.29.8+k3s1")),
        release("v1.28.3+k3s1", published: "2024-01-01T00:00:00Z", assets: k3sAssets("v1.28.3+k3s1")),
    ]

    static let flux: [JSON] = [
        release("v2.9.0-rc.1", published: "2026-06-01T00:00:00Z", prerelease: true),
        release("v2.8.0", published: "2026-02-24T00:00:00Z"),
        release("v2.7.2", published: "2025-12-01T00:00:00Z"),
        release("v2.4.0", published: "2024-09-30T00:00:00Z"),
        release("v2.3.0", published: "2024-05-13T00:00:00Z"),
    ]

    static let longhorn: [JSON] = [
        release("v1.10.0-rc1", published: "2025-09-01T00:00:00Z", prerelease: true),
        release("v1.9.1", published: "2025-07-01T00:00:00Z"),
        release("v1.8.2", published: "2025-06-01T00:00:00Z"),
        release("v1.9.0", published: "2025-05-27T00:00:00Z"),
        release("v1.8.0", published: "2025-01-22T00:00:00Z"),
        release("v1.7.3", published: "2025-01-01T00:00:00Z"),
        release("v1.7.2", published: "2024-10-01T00:00:00Z"),
    ]

    static func channels(base: String = "https://update.k3s.io") -> JSON {
        func channel(_ name: String, _ latest: String, extra: [String: JSON] = [:]) -> JSON {
            var object: JSON = ["id": .string(name), "type": "channel", "name": .string(name), "latest": .string(latest),
                                "links": ["self": .string("\(base)/v1-release/channels/\(name)")]]
            for (key, value) in extra { object[key] = value }
            return object
        }
        return ["type": "collection", "links": ["self": .string("\(base)/v1-release/channels")], "actions": [:], "resourceType": "channels",
                "data": [channel("stable", "v1.33.5+k3s1"),
                         channel("latest", "v1.34.1+k3s1", extra: ["latestRegexp": ".*", "excludeRegexp": "^[^+]+-"]),
                         channel("v1.31", "v1.31.4+k3s1"), channel("v1.32", "v1.32.3+k3s1"), channel("v1.33", "v1.33.5+k3s1")]]
    }

    static func releases(of component: Component) -> [JSON] {
        switch component {
        case .k3s: k3s
        case .flux: flux
        case .longhorn: longhorn
        }
    }
}

/// A GitHub- and channel-server-shaped HTTP server on 127.0.0.1 for the update checks, until the
/// sandbox release server takes over: pagination with `Link`, `x-ratelimit-*`, ETags and 304s,
/// the channel server's 302, and switches for an exhausted rate limit and a corrupted answer.
final class FixtureReleaseServer: Sendable {
    struct Counters: Sendable {
        var full = 0
        var notModified = 0
        var requests: [String] = []
        var authorizations: [String?] = []
    }

    let server: SandboxHTTPServer
    let state = NIOLockedValueBox(Counters())
    let rateLimited = NIOLockedValueBox(false)
    let corrupt = NIOLockedValueBox<Component?>(nil)
    let pageSize: Int

    var baseURL: String { "http://127.0.0.1:\(server.port)" }
    var counters: Counters { state.withLockedValue { $0 } }

    init(pageSize: Int = 100) async throws {
        self.pageSize = pageSize
        let state = state
        let rateLimited = rateLimited
        let corrupt = corrupt
        server = try await SandboxHTTPServer.start(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton) { request in
            Self.respond(request, state: state, rateLimited: rateLimited, corrupt: corrupt, pageSize: pageSize)
        }
    }

    func close() async { await server.close() }

    static func respond(_ request: APIRequest, state: NIOLockedValueBox<Counters>, rateLimited: NIOLockedValueBox<Bool>,
                        corrupt: NIOLockedValueBox<Component?>, pageSize requested: Int) -> APIResponse
    {
        let header = { (name: String) in request.headers.first { $0.0 == name }?.1 }
        state.withLockedValue {
            $0.requests.append(request.path)
            $0.authorizations.append(header("authorization"))
        }
        let base = "http://\(header("host") ?? "127.0.0.1")"
        if request.path == "/v1-release/channels" {
            return conditional(ReleaseFixture.channels(base: base).serialized(), request: request, state: state, headers: [])
        }
        if request.path.hasPrefix("/v1-release/channels/") {
            let name = String(request.path.dropFirst("/v1-release/channels/".count))
            guard let channel = ReleaseFixture.channels().data(name) else { return .text("404 page not found\n", status: 404) }
            return APIResponse(status: 302, contentType: "text/html", body: [],
                               headers: [("Location", "https://github.com/k3s-io/k3s/releases/tag/\(channel.replacingOccurrences(of: "+", with: "%2B"))")])
        }
        let reset = Int(HTTPClockNow.now()) + 3600
        var rateHeaders = [("x-ratelimit-limit", "60"), ("x-ratelimit-used", "3"), ("x-ratelimit-reset", String(reset))]
        if rateLimited.withLockedValue({ $0 }) {
            rateHeaders.append(("x-ratelimit-remaining", "0"))
            return APIResponse(status: 403, body: Array(#"{"message":"API rate limit exceeded for 127.0.0.1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#.utf8),
                               headers: rateHeaders)
        }
        rateHeaders.append(("x-ratelimit-remaining", "57"))
        for component in Component.allCases where request.path == "/repos/\(component.repository)/releases" {
            if corrupt.withLockedValue({ $0 }) == component {
                return APIResponse(status: 200, body: Array(#"[{"tag_name":"v1.33.5+k3s1","draft":false,"#.utf8), headers: rateHeaders)
            }
            let all = ReleaseFixture.releases(of: component)
            let perPage = min(requested, Int(request.query["per_page"] ?? "30") ?? 30)
            let page = max(1, Int(request.query["page"] ?? "1") ?? 1)
            let slice = Array(all.dropFirst((page - 1) * perPage).prefix(perPage))
            var headers = rateHeaders
            if page * perPage < all.count {
                headers.append(("Link", "<\(base)/repos/\(component.repository)/releases?per_page=\(perPage)&page=\(page + 1)>; rel=\"next\", <\(base)/repos/\(component.repository)/releases?per_page=\(perPage)&page=\((all.count + perPage - 1) / perPage)>; rel=\"last\""))
            }
            return conditional(JSON.array(slice).serialized(), request: request, state: state, headers: headers)
        }
        return APIResponse(status: 404, body: Array(#"{"message":"Not Found"}"#.utf8), headers: rateHeaders)
    }

    /// 304 when `If-None-Match` carries this body's ETag.
    static func conditional(_ body: [UInt8], request: APIRequest, state: NIOLockedValueBox<Counters>, headers: [(String, String)]) -> APIResponse {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in body { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let etag = "W/\"\(String(hash, radix: 16))\""
        if request.headers.first(where: { $0.0 == "if-none-match" })?.1 == etag {
            state.withLockedValue { $0.notModified += 1 }
            return APIResponse(status: 304, body: [], headers: headers + [("ETag", etag)])
        }
        state.withLockedValue { $0.full += 1 }
        return APIResponse(status: 200, body: body, headers: headers + [("ETag", etag)])
    }
}

enum HTTPClockNow {
    static func now() -> Double { Date().timeIntervalSince1970 }
}

extension JSON {
    /// The `latest` of channel `name` in a channel collection.
    func data(_ name: String) -> String? {
        self["data"]?.array?.first { $0["name"]?.string == name }?["latest"]?.string
    }
}
