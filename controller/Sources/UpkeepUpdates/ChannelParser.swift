import UpkeepCore
import UpkeepHTTP
import UpkeepKube

/// Validates and reads the k3s channel server's answers (rancher/channelserver):
/// the collection `GET /v1-release/channels` and the `302` of `GET /v1-release/channels/<name>`.
public enum ChannelParser {
    /// `{"data":[{"name":"stable","latest":"v1.33.5+k3s1",…},…]}`: every channel needs a name
    /// (lowercase letters, digits, `.`, `-`) and a `latest` that is a k3s version.
    public static func channels(_ bytes: [UInt8], source: String) throws(AnswerError) -> [K3sChannel] {
        let json = try AnswerReader.parse(bytes, source: source)
        let collection = try AnswerReader(json, path: "", source: source)
        var channels: [K3sChannel] = []
        var seen = Set<String>()
        for (index, item) in try collection.array("data").enumerated() {
            let fields = try AnswerReader(item, path: ".data[\(index)]", source: source)
            let name = try fields.string("name")
            guard isChannelName(name) else { throw fields.error("name", "\"\(name.prefix(60).replacingControlCharacters)\" is not a channel name") }
            let latest = try fields.string("latest")
            let parsed: K3sVersion?
            do { parsed = try Component.k3s.releaseVersion(fromTag: latest) } catch { throw fields.error("latest", error.description) }
            guard seen.insert(name).inserted else { throw fields.error("name", "channel \(name) appears twice") }
            // A channel still pointing at a legacy-scheme release is real but never a target.
            guard let version = parsed else { continue }
            channels.append(K3sChannel(name: name, latest: version))
        }
        guard !channels.isEmpty else { throw AnswerError(source: source, location: ".data", problem: "no channels") }
        return channels
    }

    /// The version a channel's redirect points at: the last path segment of
    /// `Location: https://github.com/k3s-io/k3s/releases/tag/<version>`.
    public static func version(fromRedirect status: Int, location: String?, source: String) throws(AnswerError) -> K3sVersion {
        guard [301, 302, 303, 307, 308].contains(status) else {
            throw AnswerError(source: source, problem: "expected a redirect to the channel's release, got HTTP \(status)")
        }
        guard let location, !location.isEmpty else { throw AnswerError(source: source, problem: "HTTP \(status) without a Location header") }
        let path = location.split(separator: "?").first.map(String.init) ?? location
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        guard segments.count >= 3, segments[segments.count - 2] == "tag", segments[segments.count - 3] == "releases",
              let last = segments.last, let tag = HTTPURL.percentDecode(String(last)) else {
            throw AnswerError(source: source, location: "Location",
                              problem: "\"\(location.prefix(200).replacingControlCharacters)\" does not end in /releases/tag/<version>")
        }
        do { return try Component.k3s.version(fromTag: tag) } catch { throw AnswerError(source: source, location: "Location", problem: error.description) }
    }

    public static func isChannelName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D }
    }
}
