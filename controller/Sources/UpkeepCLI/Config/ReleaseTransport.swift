import Foundation
import Synchronization
import UpkeepCore
import UpkeepHTTP
import UpkeepPOSIX

/// Release sources over plain HTTP: a binary and its checksum file (or a release list and its
/// digests) come from one origin, so anyone on the way can replace both together. They are
/// refused unless `releases.insecure: true` (`--insecure` for `upkeep check`) says the operator
/// accepts that, and then each such source is warned about whenever it is used, at most once an
/// hour per source (once per command; hourly in `upkeep serve`). A loopback host (127.0.0.0/8,
/// ::1, localhost) is neither refused nor warned about: its bytes never leave this machine, and
/// whoever can change them there controls the controller already.
enum ReleaseTransport {
    /// Which kind of release source was read over plain HTTP.
    enum Source: String, CaseIterable, Hashable, Sendable {
        case githubAPI = "github-api"
        case channelServer = "channel-server"
        case mirror
    }

    /// Seconds between two warnings about one source.
    static let warningIntervalSeconds = 3600.0
    private static let lastWarned = Mutex<[String: Double]>([:])
    /// Every use of an http:// source allowed by `insecure` (warned about or not), since the
    /// process started: `upkeep serve` exports it as `upkeep_release_insecure_uses_total{source}`.
    static let insecureUses = LimitTally<Source>()

    /// Why `url` (set by `setting`) is refused, and what to do.
    static func refusal(setting: String, url: String, override: String) -> String {
        "\(url) is plain http://, so anyone on the way can replace the k3s binaries and their checksums together; "
            + "use https:// (caFile trusts a private CA), or set \(override) to accept that risk "
            + "(docs/configuration.md, \"Release sources\")"
    }

    /// Throws when one of `sources` is http:// and `insecure` is not set; warns (rate-limited)
    /// about each that is, when it is.
    static func check(_ sources: [(setting: String, url: String)], insecure: Bool, override: String,
                      warn: (String) -> Void = ReleaseTransport.standardError) throws {
        for (setting, url) in sources where url.lowercased().hasPrefix("http://") && !isLoopback(url) {
            guard insecure else { throw CheckConfigurationError(description: "\(setting): " + refusal(setting: setting, url: url, override: override)) }
            guard let source = Source(rawValue: setting) else { preconditionFailure("\(setting) is not a release source") }
            insecureUses.add(source)
            let now = Double(Instant.wallClockNow().milliseconds) / 1000
            let due = lastWarned.withLock { last in
                guard now - (last[url] ?? -.infinity) >= warningIntervalSeconds else { return false }
                last[url] = now
                return true
            }
            if due {
                warn("warning: \(setting) \(url) is read over plain HTTP (releases.insecure: true): nothing protects what it serves on the way; "
                     + "use https:// outside a test bed")
            }
        }
    }

    /// Whether the URL's host is this machine's loopback.
    static func isLoopback(_ url: String) -> Bool {
        guard let host = (try? HTTPURL(url))?.host.lowercased() else { return false }
        return host == "localhost" || host == "::1" || host == "[::1]" || (host.hasPrefix("127.") && host.split(separator: ".").count == 4
            && host.split(separator: ".").allSatisfy { UInt8($0) != nil })
    }

    static func standardError(_ line: String) {
        fflush(nil)  // every stream: what went to stdout before goes out first
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension ControllerConfig.Releases {
    /// The sources of this section given as http:// URLs, by field name.
    var plainHTTPSources: [(key: String, url: String)] {
        [("githubAPI", githubAPI), ("channelServer", channelServer), ("mirror", mirror ?? "")]
            .filter { $0.1.lowercased().hasPrefix("http://") }
    }
}
