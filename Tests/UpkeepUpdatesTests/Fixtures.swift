import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import UpkeepCore
import UpkeepKube
import UpkeepSandbox
import UpkeepUpdates

/// GitHub-shaped release answers (https://docs.github.com/rest/releases/releases), with k3s's
/// asset and checksum-file names as k3s's install.sh expects them.
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

extension ReleaseFixture {
    /// The same history as releases of the sandbox's catalog: k3s releases carry every arch's
    /// files as k3s publishes them (binaries are placeholders, checksum files real), so v1.32.3's
    /// missing `k3s-armhf` is a fault a test switches on (`drop-asset`), not part of the data.
    static func catalogReleases() -> [ReleaseCatalog.Release] {
        Component.allCases.flatMap { component in
            releases(of: component).map { json -> ReleaseCatalog.Release in
                let tag = json["tag_name"]?.string ?? ""
                let draft = json["draft"]?.bool == true
                let prerelease = json["prerelease"]?.bool == true
                let published = KubeTime.parse(json["created_at"]?.string ?? "") ?? 0
                let parts = component.repository.split(separator: "/").map(String.init)
                switch component {
                case .k3s:
                    return ReleaseCatalog.k3sRelease(tag, prerelease: prerelease, draft: draft, publishedAt: published) { arch in
                        Array("k3s \(tag) for \(arch)\n".utf8)
                    }
                case .flux, .longhorn:
                    let name = component == .flux ? "install.yaml" : "longhorn.yaml"
                    return ReleaseCatalog.Release(owner: parts[0], repo: parts[1], tag: tag, prerelease: prerelease, draft: draft, publishedAt: published,
                                                  assets: [ReleaseCatalog.asset(name, Array("# \(component.rawValue) \(tag)\n".utf8))])
                }
            }
        }
    }
}

/// The sandbox's release server (`ReleaseServer`, what `upkeep sandbox up` runs) on 127.0.0.1,
/// serving `ReleaseFixture`'s real-shaped history. Faults are switched through
/// `SandboxControl.setReleaseFault`, the code behind `upkeep sandbox fault releases KIND`; here
/// the faults live in memory instead of `DIR/faults.json`.
final class SandboxReleases: Sendable {
    let server: ReleaseServer
    let faults: NIOLockedValueBox<SandboxFaults>

    var baseURL: String { server.baseURL }
    var catalog: ReleaseCatalog { server.catalog }

    init(pageSize: Int? = nil) async throws {
        let faults = NIOLockedValueBox(SandboxFaults())
        self.faults = faults
        let catalog = ReleaseCatalog(releases: ReleaseFixture.catalogReleases(), faults: { faults.withLockedValue { $0 } },
                                     now: Date().timeIntervalSince1970)
        server = try await ReleaseServer.start(catalog: catalog, host: "127.0.0.1", group: MultiThreadedEventLoopGroup.singleton)
        if let pageSize { try fault("page-size", String(pageSize)) }
    }

    /// Sets a fault as `upkeep sandbox fault releases KIND [VALUE] [--k3s-version V]` does.
    @discardableResult
    func fault(_ kind: String, _ value: String? = nil, version: String? = nil,
               options: SandboxControl.ReleaseFaultOptions = .init()) throws -> String
    {
        try faults.withLockedValue {
            try SandboxControl.setReleaseFault(&$0, kind: kind, value: value, version: version, options: options, directory: "(test)")
        }
    }

    var requests: [ReleaseCatalog.ServedRequest] { catalog.requests }

    /// The statuses answered for `path`, in order.
    func statuses(_ path: String) -> [Int] { requests.filter { $0.path == path }.map(\.status) }

    /// Full answers (200) of release lists and the channel list; 304s answered from the ETag.
    var full: Int { requests.filter { $0.status == 200 && ($0.path.hasPrefix("/repos/") || $0.path == "/v1-release/channels") }.count }
    var notModified: Int { requests.filter { $0.status == 304 }.count }
    /// API answers that cost rate limit (everything under /repos/ but 304s and refusals).
    var charged: Int { requests.filter { $0.path.hasPrefix("/repos/") && $0.status != 304 && $0.status != 403 && $0.status != 429 }.count }

    /// A mirror's files (docs/check.md layout) holding exactly what this server lists.
    var mirrorFiles: [(path: String, content: [UInt8])] {
        Component.allCases.map { component in
            let parts = component.repository.split(separator: "/").map(String.init)
            return (MirrorReleaseSource.path(of: component), catalog.releaseListJSON(owner: parts[0], repo: parts[1], baseURL: baseURL).serialized())
        } + [("channels.json", catalog.channelListJSON(baseURL: baseURL).serialized())]
    }

    func writeMirror(to root: String) throws {
        for (path, content) in mirrorFiles {
            let file = root + "/" + path
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(content).write(to: URL(fileURLWithPath: file))
        }
    }

    func close() async { await server.close() }
}
