import Foundation
import NIOHTTP1
import Testing
import UpkeepHTTP
import UpkeepTestSupport

@Suite("Redirects, tokens and the ETag cache", .timeLimit(.minutes(1)))
struct RedirectAndCacheTests {
    @Test("the channel server's 302 is handed back with its Location readable")
    func redirectNotFollowed() async throws {
        let server = try await ScriptedServer { _, _ in
            .respond(status: 302, headers: [("Location", "https://github.com/k3s-io/k3s/releases/tag/v1.33.5+k3s1")])
        }
        let client = try makeClient()
        let response = try await client.get(HTTPURL(server.url + "/v1-release/channels/stable"))
        #expect(response.status == 302)
        #expect(response.location?.description == "https://github.com/k3s-io/k3s/releases/tag/v1.33.5+k3s1")
        #expect(server.requests.count == 1)
        await client.shutdown()
        await server.close()
    }

    @Test("a followed redirect to another origin drops the Authorization header")
    func redirectDropsCredentialsAcrossOrigins() async throws {
        let assets = try await ScriptedServer { _, _ in .respond(status: 200, body: "binary".bytes) }
        let api = try await ScriptedServer { request, _ in
            request.uri == "/start" ? .respond(status: 302, headers: [("Location", "/hop")])
                : .respond(status: 302, headers: [("Location", assets.url + "/k3s")])
        }
        let client = try makeClient()
        var headers = HTTPHeaders()
        headers.add(name: "Authorization", value: "Bearer secret-token")
        let response = try await client.get(HTTPURL(api.url + "/start"), headers: headers, redirects: .follow(max: 3))
        #expect(response.text == "binary")
        #expect(response.url.description == assets.url + "/k3s")
        #expect(api.requests.map { $0.header("authorization") } == ["Bearer secret-token", "Bearer secret-token"])
        #expect(assets.requests.map { $0.header("authorization") } == [nil])
        await client.shutdown()
        await api.close()
        await assets.close()
    }

    @Test("redirect loops stop at the bound")
    func redirectLoopBounded() async throws {
        let server = try await ScriptedServer { _, _ in .respond(status: 301, headers: [("Location", "/again")]) }
        let client = try makeClient()
        await #expect(throws: HTTPClientError.tooManyRedirects(url: server.url + "/", max: 2)) {
            _ = try await client.get(HTTPURL(server.url + "/"), redirects: .follow(max: 2))
        }
        #expect(server.requests.count == 3)
        await client.shutdown()
        await server.close()
    }

    @Test("an ETag answer is reused on 304, which returns the stored body and headers")
    func etagReuse() async throws {
        let directory = try TemporaryDirectory()
        let cache = try ETagCache(directory: directory.file("http-cache"))
        let server = try await ScriptedServer { request, index in
            if request.header("if-none-match") == #"W/"abc""# {
                return .respond(status: 304, headers: [("ETag", #"W/"abc""#), ("x-ratelimit-remaining", "58")])
            }
            return .respond(status: 200, headers: [("ETag", #"W/"abc""#), ("Link", "<\(request.uri)&page=2>; rel=\"next\""),
                                                  ("x-ratelimit-remaining", "59")], body: "[{\"tag_name\":\"v1\"}] \(index)".bytes)
        }
        let client = try makeClient(cache: cache)
        let url = try HTTPURL(server.url + "/repos/longhorn/longhorn/releases?per_page=100")
        let first = try await client.get(url, cache: .etag)
        #expect(!first.fromCache)
        let second = try await client.get(url, cache: .etag)
        #expect(second.fromCache)
        #expect(second.status == 200)
        #expect(second.body == first.body)
        #expect(second.headers.first(name: "link") == first.headers.first(name: "link"))
        #expect(second.rateLimit.remaining == 58)
        #expect(server.requests.map { $0.header("if-none-match") } == [nil, #"W/"abc""#])
        // Without asking for the cache, nothing conditional is sent.
        _ = try await client.get(url)
        #expect(server.requests.last?.header("if-none-match") == nil)

        let files = try FileManager.default.contentsOfDirectory(atPath: cache.directory)
        #expect(files.count == 1)
        let attributes = try FileManager.default.attributesOfItem(atPath: cache.directory + "/" + files[0])
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        await client.shutdown()
        await server.close()
    }

    @Test("a damaged cache entry is ignored, not trusted")
    func damagedCacheEntry() async throws {
        let directory = try TemporaryDirectory()
        let cache = try ETagCache(directory: directory.path)
        var headers = HTTPHeaders()
        headers.add(name: "ETag", value: "\"x\"")
        cache.store(url: "http://a/b", accept: "*/*", etag: "\"x\"", status: 200, headers: headers, body: "hello".bytes, now: 0)
        #expect(cache.lookup(url: "http://a/b", accept: "*/*")?.body == "hello".bytes)
        let file = try FileManager.default.contentsOfDirectory(atPath: directory.path)[0]
        let handle = try #require(FileHandle(forUpdatingAtPath: directory.path + "/" + file))
        try handle.truncate(atOffset: try handle.seekToEnd() - 2)
        try handle.close()
        #expect(cache.lookup(url: "http://a/b", accept: "*/*") == nil)
        #expect(cache.lookup(url: "http://a/c", accept: "*/*") == nil)
    }

    @Test("a token comes from a 0600 file or the environment and never shows in text")
    func tokenLoading() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("ghp_example123\n", to: "token")
        chmod(path, 0o644)
        #expect(throws: TokenError.tooOpen(path, mode: 0o644)) { _ = try BearerToken.load(file: path, environment: [:]) }
        chmod(path, 0o600)
        let fromFile = try #require(try BearerToken.load(file: path, environment: ["GITHUB_TOKEN": "other"]))
        #expect(fromFile.authorizationHeader == "Bearer ghp_example123")
        #expect(!"\(fromFile)".contains("ghp_"))
        let fromEnvironment = try #require(try BearerToken.load(file: nil, environment: ["GITHUB_TOKEN": "ghp_env"]))
        #expect(fromEnvironment.source == "environment variable GITHUB_TOKEN")
        #expect(try BearerToken.load(file: nil, environment: [:]) == nil)
        #expect(throws: TokenError.invalidCharacters("environment variable GITHUB_TOKEN")) {
            _ = try BearerToken.load(file: nil, environment: ["GITHUB_TOKEN": "a\r\nInjected: yes"])
        }
        #expect(throws: TokenError.self) { _ = try BearerToken.load(file: directory.file("missing"), environment: [:]) }
    }
}
