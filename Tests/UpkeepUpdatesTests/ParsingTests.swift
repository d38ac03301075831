import Foundation
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepUpdates

/// Answers shaped exactly as GitHub's releases API (https://docs.github.com/rest/releases/releases)
/// and the k3s channel server (https://update.k3s.io/v1-release/channels) send them.
@Suite("Parsing and validating release-source answers")
struct ParsingTests {
    static let channelCollection = """
        {"type":"collection","links":{"self":".../v1-release/channels"},"actions":{},"resourceType":"channels",
         "data":[{"id":"stable","type":"channel","links":{"self":".../v1-release/channels/stable"},
                  "name":"stable","latest":"v1.33.5+k3s1"},
                 {"id":"latest","type":"channel","links":{"self":".../v1-release/channels/latest"},
                  "name":"latest","latest":"v1.34.1+k3s1","latestRegexp":".*","excludeRegexp":"^[^+]+-"}]}
        """

    /// The reference's release, with a real 64-hex digest where it abbreviates `sha256:<hex>`.
    static let releases = """
        [{"tag_name":"v1.33.4+k3s1","name":"v1.33.4+k3s1","draft":false,"prerelease":false,
          "published_at":"2025-08-20T12:00:00Z",
          "assets":[{"name":"sha256sum-amd64.txt","size":440,"state":"uploaded","digest":"sha256:\(String(repeating: "0f", count: 32))",
            "browser_download_url":"https://github.com/k3s-io/k3s/releases/download/v1.33.4%2Bk3s1/sha256sum-amd64.txt"}]}]
        """

    @Test("the channel server's collection gives each channel's version")
    func channelCollection() throws {
        let channels = try ChannelParser.channels(Array(Self.channelCollection.utf8), source: "channels")
        #expect(channels == [K3sChannel(name: "stable", latest: try K3sVersion("v1.33.5+k3s1")),
                             K3sChannel(name: "latest", latest: try K3sVersion("v1.34.1+k3s1"))])
    }

    @Test("the channel redirect's Location names the version in its last segment")
    func channelRedirect() throws {
        #expect(try ChannelParser.version(fromRedirect: 302, location: "https://github.com/k3s-io/k3s/releases/tag/v1.33.5+k3s1", source: "s")
            == (try K3sVersion("v1.33.5+k3s1")))
        #expect(try ChannelParser.version(fromRedirect: 302, location: "https://github.com/k3s-io/k3s/releases/tag/v1.31.4%2Bk3s1", source: "s")
            == (try K3sVersion("v1.31.4+k3s1")))
        #expect(throws: AnswerError.self) { try ChannelParser.version(fromRedirect: 200, location: nil, source: "s") }
        #expect(throws: AnswerError.self) { try ChannelParser.version(fromRedirect: 302, location: nil, source: "s") }
        #expect(throws: AnswerError.self) {
            try ChannelParser.version(fromRedirect: 302, location: "https://github.com/k3s-io/k3s/releases", source: "s")
        }
        #expect(throws: AnswerError.self) {
            try ChannelParser.version(fromRedirect: 302, location: "https://github.com/k3s-io/k3s/releases/tag/latest", source: "s")
        }
    }

    @Test("a GitHub release list reads with its assets")
    func releaseList() throws {
        let releases = try ReleaseParser.releases(Array(Self.releases.utf8), component: .k3s, source: "r")
        #expect(releases.count == 1)
        let release = releases[0]
        #expect(release.version == (try K3sVersion("v1.33.4+k3s1")))
        #expect(!release.draft && !release.prerelease)
        #expect(release.publishes("sha256sum-amd64.txt"))
        #expect(!release.publishes("k3s"))
        #expect(release.assets[0].digest?.count == 71)
    }

    @Test("the reference's abbreviated digest is itself refused as malformed")
    func abbreviatedDigestRefused() {
        let text = Self.releases.replacingOccurrences(of: String(repeating: "0f", count: 32), with: "<hex>")
        #expect(throws: AnswerError(source: "r", location: "[0].assets[0].digest", problem: "\"sha256:<hex>\" is not sha256:<64 hex digits>")) {
            try ReleaseParser.releases(Array(text.utf8), component: .k3s, source: "r")
        }
    }

    static func reject(_ text: String, component: Component = .k3s) -> AnswerError? {
        do {
            _ = try ReleaseParser.releases(Array(text.utf8), component: component, source: "src")
            return nil
        } catch {
            return error
        }
    }

    @Test("malformed answers are refused with the field that is wrong")
    func malformed() {
        let valid = Self.releases
        #expect(Self.reject("[{\"tag_name\":\"v1.33.4+k3s1\",\"draft\":false,")?.problem.hasPrefix("not JSON") == true)
        #expect(Self.reject(#"{"message":"Bad credentials"}"#)?.problem == "expected an array of releases, found an object (the server said: Bad credentials)")
        #expect(Self.reject("[1]")?.location == "[0]")
        #expect(Self.reject(valid.replacingOccurrences(of: "\"draft\":false", with: "\"draft\":\"no\""))?.location == "[0].draft")
        #expect(Self.reject(valid.replacingOccurrences(of: "\"tag_name\":\"v1.33.4+k3s1\"", with: "\"tag_name\":\"release-1\""))?.location == "[0].tag_name")
        #expect(Self.reject(valid.replacingOccurrences(of: "v1.33.4+k3s1\",\"name", with: "v1.33.4\",\"name"))?.problem.contains("no +k3sN") == true)
        #expect(Self.reject(valid.replacingOccurrences(of: "\"name\":\"sha256sum-amd64.txt\"", with: "\"name\":\"../../etc/passwd\""))?.location
            == "[0].assets[0].name")
        #expect(Self.reject(valid.replacingOccurrences(of: "https://github.com/k3s-io/k3s/releases/download/v1.33.4%2Bk3s1/sha256sum-amd64.txt",
                                                       with: "file:///etc/sha256sum-amd64.txt"))?.location == "[0].assets[0].browser_download_url")
        #expect(Self.reject(valid.replacingOccurrences(of: "\"size\":440", with: "\"size\":-1"))?.location == "[0].assets[0].size")
        #expect(Self.reject(valid.replacingOccurrences(of: "\"assets\":", with: "\"files\":"))?.location == "[0].assets")
        #expect(Self.reject(valid.replacingOccurrences(of: "2025-08-20T12:00:00Z", with: "yesterday"))?.location == "[0].published_at")
        let twice = "[" + valid.dropFirst().dropLast() + "," + valid.dropFirst().dropLast() + "]"
        #expect(Self.reject(twice)?.problem == "tag v1.33.4+k3s1 appears twice")
        #expect(Self.reject(#"[{"tag_name":"v2.4.0+build","draft":false,"prerelease":false,"assets":[]}]"#, component: .flux)?.location == "[0].tag_name")
        let message = Self.reject("[1]")?.description ?? ""
        #expect(message.contains("src") && message.contains("regenerate"))
    }

    @Test("k3s releases of the legacy tag schemes are skipped; a modern tag without +k3sN is still refused")
    func legacyK3sTags() throws {
        let list: JSON = .array(["0.6.0", "v0.10.2", "v1.0.1", "v1.17.0+k3s.1", "v1.17.2+k3s1"].map {
            ReleaseFixture.release($0, published: "2020-01-01T00:00:00Z")
        })
        let releases = try ReleaseParser.releases(list.serialized(), component: .k3s, source: "k")
        #expect(releases.map(\.tag) == ["v1.17.2+k3s1"])
        let modern: JSON = [ReleaseFixture.release("v1.30.0", published: "2024-01-01T00:00:00Z")]
        #expect(Self.reject(modern.description)?.location == "[0].tag_name")
        let longhorn: JSON = .array(["v0.3-rc1", "v1.7.2"].map { ReleaseFixture.release($0, published: "2020-01-01T00:00:00Z") })
        #expect(try ReleaseParser.releases(longhorn.serialized(), component: .longhorn, source: "l").map(\.tag) == ["v1.7.2"])
        let garbage: JSON = [ReleaseFixture.release("k3s-latest", published: "2024-01-01T00:00:00Z")]
        #expect(Self.reject(garbage.description)?.location == "[0].tag_name")
    }

    @Test("Flux and Longhorn tags read; pre-release versions count as pre-releases")
    func otherComponents() throws {
        let flux = try ReleaseParser.releases(JSON.array(ReleaseFixture.flux).serialized(), component: .flux, source: "f")
        #expect(flux.map(\.tag) == ["v2.9.0-rc.1", "v2.8.0", "v2.7.2", "v2.4.0", "v2.3.0"])
        #expect(flux[0].prerelease)
        let unflagged = #"[{"tag_name":"v1.10.0-rc1","draft":false,"prerelease":false,"published_at":null,"assets":[]}]"#
        #expect(try ReleaseParser.releases(Array(unflagged.utf8), component: .longhorn, source: "l")[0].prerelease)
    }

    @Test("channel collections without channels or with bad versions are refused")
    func malformedChannels() throws {
        #expect(throws: AnswerError.self) { try ChannelParser.channels(Array(#"{"data":[]}"#.utf8), source: "c") }
        #expect(throws: AnswerError(source: "c", location: ".data[0].latest",
                                    problem: "tag \"v1.33.5\" is not a k3s release tag (no +k3sN); expected like v1.33.4+k3s1 (or v1.34.0-rc1+k3s1)")) {
            try ChannelParser.channels(Array(#"{"data":[{"name":"stable","latest":"v1.33.5"}]}"#.utf8), source: "c")
        }
        #expect(throws: AnswerError.self) { try ChannelParser.channels(Array(#"{"data":[{"name":"Stable Channel","latest":"v1.33.5+k3s1"}]}"#.utf8), source: "c") }
        let legacy = #"{"data":[{"name":"v1.0","latest":"v1.0.1"},{"name":"stable","latest":"v1.33.5+k3s1"}]}"#
        #expect(try ChannelParser.channels(Array(legacy.utf8), source: "c").map(\.name) == ["stable"])
    }

    @Test("Link headers give the next page")
    func linkHeader() {
        let header = #"<https://api.github.com/repositories/1/releases?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/releases?per_page=100&page=7>; rel="last""#
        #expect(LinkHeader.target(of: header, relation: "next") == "https://api.github.com/repositories/1/releases?per_page=100&page=2")
        #expect(LinkHeader.target(of: header, relation: "prev") == nil)
    }

    @Test("the built-in compatibility table answers per version and is overridable")
    func compatibility() throws {
        let table = CompatibilityTable.builtIn
        #expect(table.entry(for: .flux, try K3sVersion("v2.4.0"))?.kubernetesMin == (try MinorLine("v1.28")))
        #expect(table.entry(for: .flux, try K3sVersion("v2.9.4"))?.kubernetesMin == (try MinorLine("v1.33")))
        #expect(table.entry(for: .longhorn, try K3sVersion("v1.11.2"))?.kubernetesMin == (try MinorLine("v1.25")))
        #expect(table.entry(for: .longhorn, try K3sVersion("v1.11.3"))?.kubernetesMin == (try MinorLine("v1.34")))
        #expect(table.entry(for: .longhorn, try K3sVersion("v1.12.1"))?.kubernetesMin == (try MinorLine("v1.25")))
        #expect(table.entry(for: .longhorn, try K3sVersion("v1.3.0")) == nil)
        #expect(table.entries.allSatisfy { !$0.source.isEmpty })
        let file = #"{"entries":[{"component":"longhorn","from":"v1.7.0","before":"v1.8.0","kubernetesMin":"v1.21","kubernetesMax":"v1.31","source":"site support matrix"}]}"#
        let entries = try CompatibilityTable.entries(fromJSON: Array(file.utf8), source: "compat")
        let replaced = table.replacing(with: entries)
        #expect(replaced.entry(for: .longhorn, try K3sVersion("v1.7.2"))?.kubernetesMax == (try MinorLine("v1.31")))
        #expect(replaced.entry(for: .longhorn, try K3sVersion("v1.9.0")) == nil)
        #expect(replaced.entry(for: .flux, try K3sVersion("v2.4.0")) != nil)
        #expect(throws: AnswerError.self) {
            try CompatibilityTable.entries(fromJSON: Array(#"{"entries":[{"component":"flux","from":"v2.1.0","before":"v2.0.0","source":"x"}]}"#.utf8), source: "c")
        }
        #expect(throws: AnswerError.self) { try CompatibilityTable.entries(fromJSON: Array("nope".utf8), source: "c") }
    }
}
