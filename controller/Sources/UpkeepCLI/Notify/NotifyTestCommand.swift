import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepNotify
import UpkeepPOSIX
import UpkeepRuntime
import UpkeepStore

/// `upkeep notify test [--sink N]`: a `notification.test` event through the outbox to every
/// sink (or one), whatever their `events:` filters, and how each delivery went.
struct NotifyTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Send a test notification to every sink in upkeep.yaml, or to one, and say how each went.",
        discussion: "It goes through the outbox like any event (same format, signature, retries). Exit codes: 0 every sink took it, "
            + "1 a sink refused it or did not answer within its bound (not delivered ones stay in the outbox and are tried again), 2 usage."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Only this sink: its position in the list (1, 2, …) or its key/name.", valueName: "N"))
    var sink: String?

    func run() async throws {
        let config = try configOption.load()
        guard !config.notifications.isEmpty else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "no notifications: in \(config.source ?? "upkeep.yaml"); docs/notifications.md shows how to add sinks")
        }
        let chosen = try Self.choose(sink, from: config.notifications)
        let resolved = try NotificationRun.resolvedSinks(config).filter { resolved in chosen.contains { $0.key == resolved.sink.key } }
        let store = try openStateStore(config)
        let now = Instant.wallClockNow()
        let event = NotificationEvent(.test, summary: "A test notification from Upkeep (upkeep notify test); if you read this, the sink works",
                                      details: ["sentBy": RuntimeConfiguration.defaultHolder()], cluster: config.clusterName, at: now)
        try storeCall { try store.emit(event, toSinks: chosen.map(\.key), now: now) }
        guard let deliverer = try NotificationRun.deliverer(config, store: store, sinks: resolved) else { return }
        await deliverer.start()
        _ = await deliverer.flush(timeoutSeconds: NotificationRun.flushSecondsMax + Double(chosen.map(\.timeoutSeconds).max() ?? 0))
        await deliverer.stop()
        var failed = 0
        for target in chosen {
            let entry = try storeCall { try store.outboxEntries(sink: target.key, limit: 50) }.first { $0.id == event.id }
            let line: String
            switch entry?.state {
            case .sent?:
                line = "sent"
            case .dead?:
                failed += 1
                line = "given up: \(entry?.lastError ?? "?")"
            default:
                failed += 1
                line = "not delivered yet (\(entry?.lastError ?? "no answer")); kept in the outbox and tried again"
            }
            print("\(target.position) \(target.key) (\(target.label)): \(line)")
        }
        print("test notification \(event.id)")
        if failed > 0 { throw ExitCode(1) }
    }

    /// The sinks `selector` names (a 1-based position or a key), or all of them.
    static func choose(_ selector: String?, from sinks: [NotificationSink]) throws -> [NotificationSink] {
        guard let selector else { return sinks }
        if let position = Int(selector) {
            guard let sink = sinks.first(where: { $0.position == position }) else {
                throw ValidationError("--sink \(position): upkeep.yaml lists \(sinks.count) sink\(sinks.count == 1 ? "" : "s") (1 to \(sinks.count))")
            }
            return [sink]
        }
        guard let sink = sinks.first(where: { $0.key == selector }) else {
            throw ValidationError("--sink \(selector): no such sink; the keys are \(sinks.map(\.key).joined(separator: ", "))")
        }
        return [sink]
    }
}
