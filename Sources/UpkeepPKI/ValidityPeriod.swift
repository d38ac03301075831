#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// When a certificate is valid, as explicit instants so tests can make expired and
/// not-yet-valid certificates. Certificates store whole seconds; fractions are dropped.
public struct ValidityPeriod: Sendable, Equatable {
    public var notBefore: Date
    public var notAfter: Date

    public init(notBefore: Date, notAfter: Date) {
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    /// `n` days starting exactly at `from`.
    public static func days(_ n: Int, from: Date = Date()) -> ValidityPeriod {
        ValidityPeriod(notBefore: from, notAfter: from.addingTimeInterval(TimeInterval(n) * 86_400))
    }

    /// The same period with its start moved `seconds` earlier, so peers whose clocks run a
    /// little behind the issuer's accept a fresh certificate.
    public func startingEarlier(bySeconds seconds: TimeInterval) -> ValidityPeriod {
        ValidityPeriod(notBefore: notBefore.addingTimeInterval(-seconds), notAfter: notAfter)
    }
}
