import Foundation

/// What `upkeep sandbox fault releases KIND` switches on in the release server, beyond the two
/// original switches in `SandboxFaults` (`releasesRateLimited`, `corruptBinaries`). Read at every
/// request, so a fault takes effect on the next one; `releases clear` removes them all.
///
/// Faults that must be seen at least once (the rate limit with a reset, the secondary limit)
/// carry `armedAt`, the time they were set: the server counts from the first request after that,
/// never from the wall clock alone, so a slow client still meets the fault.
public struct ReleaseFaults: Codable, Sendable, Equatable {
    /// The primary limit is used up at the first API request after `armedAt` and resets
    /// `resetSeconds` later (then the API answers again, with a fresh window).
    public struct RateLimitReset: Codable, Sendable, Equatable {
        public var resetSeconds: Double
        public var armedAt: Double
        public init(resetSeconds: Double, armedAt: Double) {
            self.resetSeconds = resetSeconds
            self.armedAt = armedAt
        }
    }

    /// GitHub's secondary limit: the next `requests` API requests get `status` (403 or 429)
    /// with `retry-after: retryAfterSeconds`; the primary limit is not touched.
    public struct SecondaryLimit: Codable, Sendable, Equatable {
        public var retryAfterSeconds: Int
        public var requests: Int
        public var status: Int
        public var armedAt: Double
        public init(retryAfterSeconds: Int, requests: Int = 1, status: Int = 403, armedAt: Double) {
            self.retryAfterSeconds = retryAfterSeconds
            self.requests = requests
            self.status = status
            self.armedAt = armedAt
        }
    }

    /// An asset left out of a release (its listing and its download); `tag` nil: of every release.
    public struct DroppedAsset: Codable, Sendable, Equatable {
        public var name: String
        public var tag: String?
        public init(name: String, tag: String? = nil) {
            self.name = name
            self.tag = tag
        }

        func drops(_ asset: String, of release: String) -> Bool { asset == name && (tag == nil || tag == release) }
    }

    public var rateLimitReset: RateLimitReset?
    public var secondaryLimit: SecondaryLimit?
    /// Answers cut in the middle (status 200, invalid JSON) for these `owner/repo` release lists
    /// and `channels` (the channel list); `*` for all of them.
    public var corruptJSON: [String]?
    /// Every request is accepted and never answered.
    public var hang: Bool?
    public var droppedAssets: [DroppedAsset]?
    /// The releases API returns at most this many releases per page, whatever `per_page` asks.
    public var pageSizeMax: Int?
    /// The releases API reports another `digest` for every k3s binary than the one it serves
    /// (and its checksum file lists): the API and the downloads disagree.
    public var wrongDigests: Bool?
    /// The releases API reports `digest: null` for every asset, as for releases uploaded before
    /// GitHub computed digests (June 2025).
    public var noDigests: Bool?

    public init() {}

    public var isEmpty: Bool { self == ReleaseFaults() }

    func corrupts(_ target: String) -> Bool {
        corruptJSON.map { $0.contains("*") || $0.contains(target) } ?? false
    }

    func drops(_ asset: String, of tag: String) -> Bool {
        droppedAssets?.contains { $0.drops(asset, of: tag) } ?? false
    }

    /// In words, for `upkeep sandbox status`.
    public var summary: [String] {
        var parts: [String] = []
        if let rateLimitReset { parts.append("rate limit exhausted, resetting \(Int(rateLimitReset.resetSeconds)) s after the first refusal") }
        if let secondaryLimit {
            parts.append("secondary limit (HTTP \(secondaryLimit.status), retry-after \(secondaryLimit.retryAfterSeconds) s) for \(secondaryLimit.requests) request(s)")
        }
        if let corruptJSON { parts.append("corrupt JSON for \(corruptJSON.joined(separator: ", "))") }
        if hang == true { parts.append("never answers") }
        for dropped in droppedAssets ?? [] { parts.append("no \(dropped.name) in \(dropped.tag ?? "any release")") }
        if let pageSizeMax { parts.append("at most \(pageSizeMax) releases per page") }
        if wrongDigests == true { parts.append("the API's digests of k3s binaries are wrong") }
        if noDigests == true { parts.append("the API gives no digests") }
        return parts
    }
}

extension SandboxFaults {
    func dropsAsset(_ name: String, of tag: String) -> Bool { releaseFaults?.drops(name, of: tag) ?? false }
}
