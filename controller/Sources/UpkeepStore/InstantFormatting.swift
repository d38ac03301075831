import Foundation
import UpkeepRollout
import UpkeepCore

extension Instant {
    /// The moment as wall-clock UTC, `2026-11-28T17:30:02Z` (Instants are Unix milliseconds in production).
    public var utcDescription: String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
