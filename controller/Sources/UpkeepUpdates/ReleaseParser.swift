import UpkeepCore
import UpkeepHTTP
import UpkeepKube

/// Validates and reads GitHub's `GET /repos/{owner}/{repo}/releases` answers (and the same
/// arrays stored in a mirror).
///
/// Every release must have a `tag_name` that is a version of the component, boolean `draft`
/// and `prerelease`, an ISO 8601 `published_at` or null, and `assets` whose names are plain
/// file names (letters, digits, `.`, `_`, `+`, `-`), whose sizes are non-negative, whose
/// `digest` is null or `sha256:<64 hex>`, and whose download URL is http(s) and ends in the
/// asset's name. One bad field refuses the whole answer with an `AnswerError` naming it.
/// k3s releases of the tag schemes used before v1.17.0+k3s1 are skipped, not refused.
public enum ReleaseParser {
    public static let assetNameBytesMax = 255

    public static func releases(_ bytes: [UInt8], component: Component, source: String) throws(AnswerError) -> [Release] {
        let json = try AnswerReader.parse(bytes, source: source)
        guard let items = json.array else {
            let message = json["message"]?.string.map { " (the server said: \($0.prefix(200)))" } ?? ""
            throw AnswerError(source: source, problem: "expected an array of releases, found \(AnswerReader.kind(json))\(message)")
        }
        var releases: [Release] = []
        var seen = Set<String>()
        for (index, item) in items.enumerated() {
            guard let release = try release(item, component: component, path: "[\(index)]", source: source) else { continue }
            guard seen.insert(release.tag).inserted else {
                throw AnswerError(source: source, location: "[\(index)].tag_name", problem: "tag \(release.tag) appears twice")
            }
            releases.append(release)
        }
        return releases
    }

    /// nil for a k3s release of a legacy tag scheme (see `Component.releaseVersion(fromTag:)`).
    static func release(_ json: JSON, component: Component, path: String, source: String) throws(AnswerError) -> Release? {
        let fields = try AnswerReader(json, path: path, source: source)
        let tag = try fields.string("tag_name")
        let version: K3sVersion?
        do { version = try component.releaseVersion(fromTag: tag) } catch { throw fields.error("tag_name", error.description) }
        guard let parsed = version else { return nil }
        let draft = try fields.bool("draft")
        let prerelease = try fields.bool("prerelease")
        let publishedAt = try fields.optionalString("published_at")
        if let publishedAt, HTTPDate.parseISO8601(publishedAt) == nil {
            throw fields.error("published_at", "\"\(publishedAt.prefix(40))\" is not an ISO 8601 UTC time")
        }
        var assets: [ReleaseAsset] = []
        var names = Set<String>()
        for (index, item) in try fields.array("assets").enumerated() {
            let asset = try self.asset(item, path: "\(path).assets[\(index)]", source: source)
            guard names.insert(asset.name).inserted else {
                throw AnswerError(source: source, location: "\(path).assets[\(index)].name", problem: "asset \(asset.name) appears twice")
            }
            assets.append(asset)
        }
        return Release(tag: tag, version: parsed, draft: draft, prerelease: prerelease || parsed.isPreRelease,
                       publishedAt: publishedAt, assets: assets)
    }

    static func asset(_ json: JSON, path: String, source: String) throws(AnswerError) -> ReleaseAsset {
        let fields = try AnswerReader(json, path: path, source: source)
        let name = try fields.string("name")
        guard isPlainFileName(name) else {
            throw fields.error("name", "\"\(name.prefix(80).replacingControlCharacters)\" is not a plain file name (letters, digits, . _ + - only)")
        }
        let size = try fields.integer("size")
        guard size >= 0 else { throw fields.error("size", "negative size \(size)") }
        let state = try fields.string("state")
        let digest = try fields.optionalString("digest")
        if let digest, !isSHA256Digest(digest) {
            throw fields.error("digest", "\"\(digest.prefix(80))\" is not sha256:<64 hex digits>")
        }
        let url = try fields.string("browser_download_url")
        guard url.hasPrefix("https://") || url.hasPrefix("http://"),
              url.hasSuffix("/" + name) || url.hasSuffix("/" + HTTPURL.percentEncode(name)) else {
            throw fields.error("browser_download_url", "\"\(url.prefix(200))\" is not an http(s) URL ending in /\(name)")
        }
        return ReleaseAsset(name: name, size: size, state: state, digest: digest, downloadURL: url)
    }

    static func isPlainFileName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= assetNameBytesMax, name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "._+-".utf8.contains(byte)
        }
    }

    static func isSHA256Digest(_ text: String) -> Bool {
        guard text.hasPrefix("sha256:") else { return false }
        let hex = text.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
