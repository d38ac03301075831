import Foundation
import UpkeepCore
import UpkeepPOSIX
import UpkeepStore

/// `certificate.expiring` (docs/notifications.md): told once per certificate and threshold — 14
/// days before its end, then 3 — by the expiry checks that run on their own: `upkeep pki renew`
/// (the daily timer) and `upkeep serve` (hourly). Agents renew at two thirds of their lifetime,
/// so a certificate this close to its end was not renewed.
enum CertificateExpiryNotice {
    /// Days before the end at which a certificate is told of, tightest last.
    static let thresholdsDays = [14, 3]

    /// Emits for every unrevoked certificate of `config`'s PKI (or `directory`) within a
    /// threshold not told yet; returns how many were emitted. Failures to read are not told
    /// here (`pki status` shows them); a store failure is said on stderr.
    @discardableResult
    static func check(config: ControllerConfig, directory: String? = nil, store: StateStore, now: Date = Date()) -> Int {
        guard let inventory = try? PKIInventory.read(directory: directory, config: config) else { return 0 }
        var emitted = 0
        for entry in inventory.entries where !entry.revoked {
            guard let notAfter = entry.notAfter else { continue }
            let secondsLeft = notAfter.timeIntervalSince(now)
            let daysLeft = Int((secondsLeft / 86_400).rounded(.down))
            // The tightest threshold crossed: a certificate first seen 2 days before its end is told once, not twice.
            guard let threshold = thresholdsDays.last(where: { secondsLeft <= Double($0) * 86_400 }) else { continue }
            let end = notAfter.formatted(.iso8601)
            let when = secondsLeft > 0 ? "expires in \(daysLeft) day\(daysLeft == 1 ? "" : "s") (\(end))" : "expired at \(end)"
            do {
                emitted += try store.emit(.certificateExpiring,
                                          summary: "The certificate of \(entry.identity) \(when); `upkeep pki status` lists them, docs/pki.md says how to reissue",
                                          details: ["identity": entry.identity, "file": entry.file, "notAfter": end, "daysLeft": "\(daysLeft)"],
                                          once: "certificate.expiring \(entry.identity) \(end) \(threshold)d", now: .wallClockNow()) > 0 ? 1 : 0
            } catch {
                fflush(nil)  // every stream: what went to stdout before goes out first
                FileHandle.standardError.write(Data("warning: cannot record the certificate.expiring notification: \(error)\n".utf8))
            }
        }
        return emitted
    }
}
