import Foundation
import UpkeepNotify
import UpkeepRuntime
import UpkeepStore
import UpkeepYAML

/// Notifications around one command (docs/notifications.md): the sinks' files are read first
/// (a missing or too open secret stops the command before it changes anything), the deliverer
/// runs beside the command in tasks of its own, and at the end gets at most `flushSecondsMax` to
/// deliver what is due; what is left stays in the outbox for the next run or `upkeep serve`.
enum NotificationRun {
    /// How long a command waits at its end for notifications still due.
    static let flushSecondsMax = 10.0

    /// The configured sinks with their files read; a problem is a usage error naming the field.
    static func resolvedSinks(_ config: ControllerConfig) throws -> [ResolvedSink] {
        do {
            return try config.notifications.map { sink throws(ConfigError) in try sink.load() }
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "\(error)")
        }
    }

    /// A deliverer for `store`'s outbox and the configured sinks, or nil when there are none.
    static func deliverer(_ config: ControllerConfig, store: StateStore, sinks: [ResolvedSink]? = nil) throws -> NotificationDeliverer? {
        let resolved = try sinks ?? resolvedSinks(config)
        guard !resolved.isEmpty else { return nil }
        do {
            return try NotificationDeliverer(store: store, sinks: resolved,
                                             configuration: NotificationDeliverer.Configuration(holder: RuntimeConfiguration.defaultHolder()))
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "notifications: \(error)")
        }
    }

    /// Runs `body` with the deliverer running, then flushes (bounded) and stops it, also when
    /// `body` throws.
    static func with<T>(_ config: ControllerConfig, store: StateStore, _ body: () async throws -> T) async throws -> T {
        guard let deliverer = try deliverer(config, store: store) else { return try await body() }
        await deliverer.start()
        let result: T
        do {
            result = try await body()
        } catch {
            await finish(deliverer)
            throw error
        }
        await finish(deliverer)
        return result
    }

    /// Gives what is due `flushSecondsMax`, stops, and says what is left.
    static func finish(_ deliverer: NotificationDeliverer) async {
        let left = await deliverer.flush(timeoutSeconds: flushSecondsMax)
        await deliverer.stop()
        if left > 0 {
            fflush(nil)  // every stream: what went to stdout before goes out first
            FileHandle.standardError.write(Data(("note: \(left) notification\(left == 1 ? "" : "s") not delivered yet; kept in the outbox for "
                                                 + "the next run or `upkeep serve` (`upkeep notify status` shows why)\n").utf8))
        }
    }
}
