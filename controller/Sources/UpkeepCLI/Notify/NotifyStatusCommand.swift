import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepNotify
import UpkeepStore

/// `upkeep notify status`: per sink, what waits in the outbox, what was sent, given up or
/// dropped, and the last error.
struct NotifyStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Per sink: notifications waiting in the outbox, sent, given up and dropped, and the last error.",
        discussion: "Counts come from the state database, so they cover every process that delivered (apply, serve, …). "
            + "Exit codes: 0 shown, 2 usage, 9 the state database could not be read."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    struct Row: Encodable {
        var sink: String
        var position: Int?
        var type: String?
        var url: String?
        var pending: Int
        var oldestPending: String?
        var sent: Int
        var failed: Int
        var dropped: Int
        var attemptsFailed: Int
        var lastSent: String?
        var lastError: String?
        var lastErrorAt: String?
    }

    func run() throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        let stats = try storeCall { try store.notificationStats(sinks: config.notifications.map(\.key)) }
        let rows = stats.map { stat in
            let sink = config.notifications.first { $0.key == stat.sink }
            return Row(sink: stat.sink, position: sink?.position, type: sink?.kind.rawValue, url: sink?.redactedURL,
                       pending: stat.pending, oldestPending: stat.oldestPendingAt?.utcDescription, sent: stat.sent, failed: stat.failed,
                       dropped: stat.dropped, attemptsFailed: stat.attemptsFailed, lastSent: stat.lastSentAt?.utcDescription,
                       lastError: stat.lastError, lastErrorAt: stat.lastErrorAt?.utcDescription)
        }.sorted { ($0.position ?? Int.max, $0.sink) < ($1.position ?? Int.max, $1.sink) }
        if output == .json {
            print(try jsonText(rows), terminator: "")
            return
        }
        guard !rows.isEmpty else {
            print("no notification sinks in \(config.source ?? "upkeep.yaml") and none in the outbox; docs/notifications.md shows how to add them")
            return
        }
        print(renderTable(["#", "SINK", "TYPE", "URL", "WAITING", "OLDEST WAITING", "SENT", "GIVEN UP", "DROPPED", "LAST ERROR"], rows.map { row in
            [row.position.map(String.init) ?? "-", row.sink, row.type ?? "(not in upkeep.yaml)", row.url ?? "-", "\(row.pending)", row.oldestPending ?? "-",
             "\(row.sent)", "\(row.failed)", "\(row.dropped)", row.lastError.map { "\($0) (\(row.lastErrorAt ?? "?"))" } ?? "-"]
        }), terminator: "")
    }
}
