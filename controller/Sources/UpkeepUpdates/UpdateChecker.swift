import UpkeepCore
import UpkeepHTTP

/// Asks a release source for what is available and plans against what is installed.
///
/// It only reads what the settings need: channels and k3s releases for k3s, Flux and Longhorn
/// releases only when they are installed. Failures propagate as `AnswerError` (a malformed
/// answer) or `ReleaseSourceError` (the source could not be asked).
public struct UpdateChecker: Sendable {
    public let source: any ReleaseSource
    public let compatibility: CompatibilityTable
    let now: @Sendable () -> Double

    public init(source: any ReleaseSource, compatibility: CompatibilityTable = .builtIn, now: @escaping @Sendable () -> Double = HTTPClock.system.now) {
        self.source = source
        self.compatibility = compatibility
        self.now = now
    }

    public func check(installed: InstalledVersions, settings: CheckSettings) async throws -> CheckReport {
        var available = AvailableVersions()
        if settings.components.contains(.k3s) {
            available.channels = try await source.channels()
            available.channelTarget = try await source.channel(named: settings.channel)
            available.releases[.k3s] = try await source.releases(of: .k3s, oldestInstalled: installed.k3s.oldest)
        }
        for (component, state) in [(Component.flux, installed.flux), (.longhorn, installed.longhorn)] {
            guard settings.components.contains(component), let state, state.state != .notInstalled else { continue }
            available.releases[component] = try await source.releases(of: component, oldestInstalled: state.version)
        }
        var table = compatibility
        if let entries = try await source.compatibilityEntries() { table = table.replacing(with: entries) }
        return UpdatePlanner.plan(installed: installed, available: available, settings: settings, compatibility: table,
                                  checkedAt: HTTPDate.iso8601(now()), releaseSource: source.description, rateLimit: source.rateLimit)
    }
}
