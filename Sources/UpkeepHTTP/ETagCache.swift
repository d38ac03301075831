#if canImport(FoundationEssentials)
import FoundationEssentials  // JSON and FileManager without CoreFoundation: the agent links this module
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import NIOHTTP1

/// Answers to GET requests kept on disk with their `ETag`, so a repeated request can be
/// conditional (`If-None-Match`) and a `304 Not Modified` (which costs no GitHub rate limit)
/// returns the stored body.
///
/// Layout: `<directory>/<16 hex>.entry`, one file per URL and `Accept` value: a JSON line of
/// metadata (URL, ETag, status, headers, body length) followed by the body bytes. Files are
/// written to a temporary name and renamed, so a crash leaves either the old or the new entry;
/// an entry whose length or URL does not match is ignored. Directory mode 0700, files 0600.
/// At most `entriesMax` entries are kept (the oldest are removed). It never stores request
/// headers, so no credential reaches the disk.
public final class ETagCache: Sendable {
    public let directory: String
    public let entriesMax: Int

    public struct Entry: Sendable, Equatable {
        public var url: String
        public var etag: String
        public var status: Int
        public var headers: [[String]]
        public var body: [UInt8]
        public var storedAtEpochSeconds: Double
    }

    private struct Metadata: Codable {
        var url: String
        var accept: String
        var etag: String
        var status: Int
        var headers: [[String]]
        var bodyBytes: Int
        var storedAtEpochSeconds: Double
    }

    public init(directory: String, entriesMax: Int = 512) throws {
        self.directory = directory
        self.entriesMax = max(1, entriesMax)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    static func key(url: String, accept: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (url + "\n" + accept).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private func path(url: String, accept: String) -> String {
        "\(directory)/\(Self.key(url: url, accept: accept)).entry"
    }

    /// The stored answer for `url` requested with `accept`, if any and intact.
    public func lookup(url: String, accept: String) -> Entry? {
        guard let data = FileManager.default.contents(atPath: path(url: url, accept: accept)),
              let newline = data.firstIndex(of: UInt8(ascii: "\n")),
              let metadata = try? JSONDecoder().decode(Metadata.self, from: data[data.startIndex..<newline]),
              metadata.url == url, metadata.accept == accept else { return nil }
        let body = data[data.index(after: newline)...]
        guard body.count == metadata.bodyBytes else { return nil }
        return Entry(url: url, etag: metadata.etag, status: metadata.status, headers: metadata.headers, body: Array(body),
                     storedAtEpochSeconds: metadata.storedAtEpochSeconds)
    }

    /// Stores an answer that carried an ETag. Failures to write are ignored: the cache only
    /// saves requests, it is never the source of truth.
    public func store(url: String, accept: String, etag: String, status: Int, headers: HTTPHeaders, body: [UInt8], now: Double) {
        let kept = headers.filter { !["set-cookie", "connection", "transfer-encoding", "keep-alive"].contains($0.name.lowercased()) }
        let metadata = Metadata(url: url, accept: accept, etag: etag, status: status, headers: kept.map { [$0.name, $0.value] },
                                bodyBytes: body.count, storedAtEpochSeconds: now)
        guard var bytes = try? JSONEncoder().encode(metadata) else { return }
        bytes.append(UInt8(ascii: "\n"))
        bytes.append(contentsOf: body)
        let target = path(url: url, accept: accept)
        guard Self.writeAtomically(bytes, to: target) else { return }
        prune(keeping: target)
    }

    /// Writes `bytes` to a fresh 0600 temporary file beside `path`, then renames it over `path`.
    static func writeAtomically(_ bytes: Data, to path: String) -> Bool {
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        var written = 0
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                written += n
            }
            return true
        }
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            unlink(temporary)
            return false
        }
        return true
    }

    private func prune(keeping kept: String) {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: directory) else { return }
        let entries = names.filter { $0.hasSuffix(".entry") }.map { "\(directory)/\($0)" }
        guard entries.count > entriesMax else { return }
        let dated = entries.filter { $0 != kept }.map { path -> (String, Date) in
            ((path), ((try? manager.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast)
        }.sorted { $0.1 < $1.1 }
        for (path, _) in dated.prefix(entries.count - entriesMax) { try? manager.removeItem(atPath: path) }
    }
}
