import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import UpkeepCore
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepNotify
import UpkeepStore
import UpkeepUpdates
import UpkeepPOSIX

enum MetricsSource {
    static let version = Upkeep.configuration.version

    /// The exposition for the state directory of `config`; with `limits`, the bounds the
    /// running serve reached too.
    static func exposition(_ config: ControllerConfig, limits: ServeLimits = ServeLimits()) throws -> String {
        let store = try openStateStore(config)
        let checks = JSONLinesCheckHistory(stateDirectory: config.resolvedStateDirectory())
        var snapshot: MetricsSnapshot
        do {
            snapshot = try MetricsSnapshot.gather(store: store, checks: checks, now: .wallClockNow(), sinks: config.notifications.map(\.key))
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        snapshot.certificateExpiries = try certificateExpiries(config)
        return snapshot.exposition(version: version, limits: limits)
    }
}

extension MetricsSource {
    /// notAfter of every unrevoked certificate `pki status` lists, by identity; when two files
    /// hold the same identity (a copy beside upkeep.yaml), the earlier expiry counts.
    static func certificateExpiries(_ config: ControllerConfig) throws -> [String: Double] {
        var expiries: [String: Double] = [:]
        let inventory: PKIInventory
        do { inventory = try PKIInventory.read(directory: nil, config: config) } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "pki: \(error)")
        }
        for entry in inventory.entries where !entry.revoked {
            guard let notAfter = entry.notAfter?.timeIntervalSince1970 else { continue }
            expiries[entry.identity] = min(expiries[entry.identity] ?? notAfter, notAfter)
        }
        return expiries
    }
}

/// `upkeep metrics`: the Prometheus exposition once, for node_exporter's textfile collector.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Upkeep's Prometheus metrics once (rollouts, node upgrades, backups, the last check), or write them to a file.",
        discussion: "For node_exporter's textfile collector: `upkeep metrics --output /var/lib/node_exporter/textfile/upkeep.prom` from a timer. "
            + "`upkeep serve` serves the same over HTTP. docs/metrics.md lists the metrics."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file (atomically, mode 0644) instead of standard output.", valueName: "PATH"))
    var output: String?

    func run() throws {
        let text = try MetricsSource.exposition(try configOption.load())
        guard let output else {
            print(text, terminator: "")
            return
        }
        try writeReplacing(output, with: text)
    }
}
