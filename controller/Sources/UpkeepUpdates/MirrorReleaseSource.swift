import Foundation
import NIOHTTP1
import UpkeepCore
import UpkeepHTTP

/// Releases and channels from a mirror: a directory, or the same tree served over HTTP(S), for
/// air-gapped clusters. The answers inside are the upstream answers stored as they are, so they
/// go through the same validation and give the same report as GitHub itself.
///
/// Layout (see docs/check.md):
/// ```
/// <mirror>/channels.json                    GET https://update.k3s.io/v1-release/channels
/// <mirror>/releases/k3s-io/k3s.json         GitHub release objects, all pages in one array
/// <mirror>/releases/fluxcd/flux2.json
/// <mirror>/releases/longhorn/longhorn.json
/// <mirror>/compatibility.json               optional: entries replacing built-in ones
/// ```
/// A missing optional file is fine; a missing release list or channel file is an error.
public final class MirrorReleaseSource: ReleaseSource {
    public enum Location: Sendable, Equatable, CustomStringConvertible {
        case directory(String)
        case url(HTTPURL)

        public var description: String {
            switch self {
            case let .directory(path): path
            case let .url(url): url.description
            }
        }
    }

    public static let fileBytesMax = 64 << 20
    public let location: Location
    private let client: HTTPClient?

    /// `client` is needed for a URL mirror.
    public init(location: Location, client: HTTPClient?) {
        self.location = location
        self.client = client
    }

    public var description: String { "mirror \(location)" }
    public var rateLimit: RateLimitStatus? { nil }

    public static func path(of component: Component) -> String { "releases/\(component.repository).json" }
    public static let channelsPath = "channels.json"
    public static let compatibilityPath = "compatibility.json"

    public func channels() async throws -> [K3sChannel] {
        let (bytes, source) = try await read(Self.channelsPath, required: true)
        return try ChannelParser.channels(bytes ?? [], source: source)
    }

    public func channel(named name: String) async throws -> K3sVersion {
        guard let channel = try await channels().first(where: { $0.name == name }) else {
            throw ReleaseSourceError(source: "\(location)/\(Self.channelsPath)", problem: "no channel named \(name)")
        }
        return channel.latest
    }

    public func releases(of component: Component, oldestInstalled: K3sVersion?) async throws -> ReleaseList {
        let (bytes, source) = try await read(Self.path(of: component), required: true)
        return ReleaseList(releases: try ReleaseParser.releases(bytes ?? [], component: component, source: source))
    }

    public func compatibilityEntries() async throws -> [CompatibilityEntry]? {
        let (bytes, source) = try await read(Self.compatibilityPath, required: false)
        guard let bytes else { return nil }
        return try CompatibilityTable.entries(fromJSON: bytes, source: source)
    }

    /// The file's bytes (nil when optional and absent) and the name to cite in errors.
    private func read(_ relative: String, required: Bool) async throws -> ([UInt8]?, String) {
        switch location {
        case let .directory(root):
            let path = "\(root)/\(relative)"
            guard FileManager.default.fileExists(atPath: path) else {
                if required { throw ReleaseSourceError(source: path, problem: "missing; the mirror layout is described in docs/check.md") }
                return (nil, path)
            }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let size = attributes[.size] as? Int, size <= Self.fileBytesMax,
                  let data = FileManager.default.contents(atPath: path) else {
                throw ReleaseSourceError(source: path, problem: "unreadable, or larger than \(Self.fileBytesMax) bytes")
            }
            return (Array(data), path)
        case let .url(base):
            let url = base.appending(path: relative)
            guard let client else { preconditionFailure("a URL mirror needs an HTTP client") }
            var headers = HTTPHeaders()
            headers.add(name: "Accept", value: "application/json")
            let response: HTTPResponse
            do {
                response = try await client.send(HTTPRequest(url: url, headers: headers, redirects: .follow(max: 3), cache: .etag))
            } catch let error as HTTPClientError {
                throw ReleaseSourceError(source: url.description, problem: error.description)
            }
            if response.status == 404, !required { return (nil, url.description) }
            try GitHubReleaseSource.expectOK(response, source: url.description)
            return (response.body, url.description)
        }
    }
}
