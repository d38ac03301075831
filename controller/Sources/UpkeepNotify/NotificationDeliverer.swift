import Foundation
import Logging
import NIOHTTP1
import UpkeepCore
import UpkeepHTTP
import UpkeepPOSIX
import UpkeepStore

/// The bounds the deliverer reaches, each counted and logged at most once a minute (`LimitLog`).
public enum NotificationLimit: String, CaseIterable, Hashable, Sendable {
    /// An attempt failed; the notification is tried again later.
    case attemptFailed = "attempt_failed"
    /// A notification was given up (refused, or `attemptsMax` attempts failed).
    case gaveUp = "gave_up"
    /// Undelivered notifications were pruned: the outbox holds at most `rowsMax` rows.
    case dropped
    /// The state database could not be read or written; tried again after the poll interval.
    case store
}

/// Time, sleep and randomness as the deliverer sees them.
public struct DeliveryClock: Sendable {
    public var now: @Sendable () -> Instant
    public var sleep: @Sendable (Double) async throws -> Void
    public var random: @Sendable () -> Double

    public init(now: @escaping @Sendable () -> Instant, sleep: @escaping @Sendable (Double) async throws -> Void,
                random: @escaping @Sendable () -> Double) {
        self.now = now
        self.sleep = sleep
        self.random = random
    }

    public static let system = DeliveryClock(now: { Instant.wallClockNow() },
                                             sleep: { try await Task.sleep(nanoseconds: UInt64(max(0, $0) * 1e9)) },
                                             random: { Double.random(in: 0..<1) })
}

/// Drains the notification outbox (docs/notifications.md): one task per sink, each claiming
/// its sink's oldest due notification, sending it with the one HTTP client (one request in
/// flight per sink, bounded by the sink's `timeoutSeconds`), and recording the outcome that
/// `DeliveryPolicy` decides. It runs beside whatever emits, in tasks of its own: a dead or
/// hanging endpoint holds up only its own sink's queue, never a rollout, which only inserts.
///
/// It never logs a URL's path, a header or a body: sinks are named by key and redacted URL.
public actor NotificationDeliverer {
    public struct Configuration: Sendable {
        /// Names this process in the outbox's claims (`host pid N`).
        public var holder: String
        /// How often an idle sink looks for new rows (other processes emit too).
        public var pollIntervalSeconds: Double
        /// A claim lasts the sink's timeout plus this, then another deliverer may take the row.
        public var claimGraceSeconds: Double
        public var backoffBaseSeconds: Double
        public var backoffMaxSeconds: Double
        /// An answer's body is read up to this; more fails the attempt.
        public var responseBytesMax: Int

        public init(holder: String, pollIntervalSeconds: Double = 1, claimGraceSeconds: Double = 15,
                    backoffBaseSeconds: Double = DeliveryPolicy.backoffBaseSeconds, backoffMaxSeconds: Double = DeliveryPolicy.backoffMaxSeconds,
                    responseBytesMax: Int = 64 << 10) {
            self.holder = holder
            self.pollIntervalSeconds = pollIntervalSeconds
            self.claimGraceSeconds = claimGraceSeconds
            self.backoffBaseSeconds = backoffBaseSeconds
            self.backoffMaxSeconds = backoffMaxSeconds
            self.responseBytesMax = responseBytesMax
        }
    }

    public nonisolated let sinks: [ResolvedSink]
    /// How often each bound was reached in this process.
    public nonisolated let limits: LimitLog<NotificationLimit>
    private let store: StateStore
    private let configuration: Configuration
    private let clock: DeliveryClock
    private let logger: Logger
    private let clients: [String: HTTPClient]
    private var tasks: [Task<Void, Never>] = []
    private var inFlight: Set<String> = []
    private var droppedSeen: [String: Int]?

    /// Throws when an HTTP client cannot be made for a sink (its CA file holds no usable CA).
    public init(store: StateStore, sinks: [ResolvedSink], configuration: Configuration, clock: DeliveryClock = .system,
                logger: Logger = Logger(label: "upkeep.notify", factory: { StreamLogHandler.standardError(label: $0) })) throws {
        self.store = store
        self.sinks = sinks
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        limits = LimitLog(logger: logger)
        // The client logs URLs, which may be credentials here: it stays silent, and the
        // deliverer says what happened with redacted URLs.
        let silent = Logger(label: "upkeep.notify.http", factory: { _ in SwiftLogNoOpLogHandler() })
        var clients: [String: HTTPClient] = [:]
        for sink in sinks {
            let timeout = Double(sink.sink.timeoutSeconds)
            let client = HTTPClient.Configuration(connectTimeoutSeconds: min(timeout, 10), responseTimeoutSeconds: timeout,
                                                  responseBytesMax: configuration.responseBytesMax, connectionsPerOriginMax: 1,
                                                  waitingMax: 8, retry: .never, userAgent: "upkeep")
            clients[sink.sink.key] = try HTTPClient(configuration: client, trust: sink.trust, logger: silent)
        }
        self.clients = clients
    }

    /// Starts one delivery task per sink (once).
    public func start() {
        guard tasks.isEmpty else { return }
        for sink in sinks {
            guard let client = clients[sink.sink.key] else { continue }
            let worker = SinkWorker(sink: sink, client: client, store: store, configuration: configuration, clock: clock, limits: limits)
            let key = sink.sink.key
            tasks.append(Task {
                await worker.run { busy in await self.mark(key, busy: busy) }
            })
        }
        let (store, keys, clock, interval) = (store, sinks.map(\.sink.key), clock, max(configuration.pollIntervalSeconds, 1) * 30)
        tasks.append(Task {
            while !Task.isCancelled {
                if let stats = try? store.notificationStats(sinks: keys) { self.noteDropped(stats) }
                do { try await clock.sleep(interval) } catch { return }
            }
        })
    }

    /// Waits until every notification for these sinks is delivered or given up, at most
    /// `timeoutSeconds`, or less when nothing is in flight and the next attempt is due after
    /// it. Returns how many are still waiting (they stay in the outbox for the next run).
    public func flush(timeoutSeconds: Double) async -> Int {
        let deadline = clock.now().adding(milliseconds: Int64(timeoutSeconds * 1000))
        var waiting = 0
        while true {
            let stats = (try? store.notificationStats(sinks: sinks.map(\.sink.key))) ?? []
            noteDropped(stats)
            waiting = stats.filter { stat in sinks.contains { $0.sink.key == stat.sink } }.reduce(0) { $0 + $1.pending }
            let now = clock.now()
            guard waiting > 0, now < deadline else { return waiting }
            if inFlight.isEmpty {
                let due = sinks.compactMap { try? store.nextNotificationDue(sink: $0.sink.key) }.min()
                if let due, due > deadline { return waiting }
            }
            do { try await clock.sleep(0.1) } catch { return waiting }
        }
    }

    /// Stops every task (a request in flight is abandoned; its claim expires and the row is
    /// sent again later) and closes the connections.
    public func stop() async {
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        tasks = []
        for client in clients.values { await client.shutdown() }
    }

    private func mark(_ sink: String, busy: Bool) {
        if busy { inFlight.insert(sink) } else { inFlight.remove(sink) }
    }

    /// Logs (rate-limited) when a sink's dropped counter grew since the last look; the first
    /// look only sets the baseline.
    private func noteDropped(_ stats: [SinkDeliveryStats]) {
        let now = Dictionary(stats.map { ($0.sink, $0.dropped) }, uniquingKeysWith: max)
        defer { droppedSeen = now }
        guard let seen = droppedSeen else { return }
        for (sink, count) in now.sorted(by: { $0.key < $1.key }) where count > seen[sink, default: 0] {
            let lost = count - seen[sink, default: 0]
            limits.record(.dropped, "notifications: \(lost) undelivered notification(s) for sink \(sink) were dropped: the outbox keeps at most "
                          + "\(store.notifications.rowsMax) rows; is the sink down? (`upkeep notify status`)")
        }
    }
}

/// One sink's delivery loop: claim, send, record, repeat; sleep while nothing is due.
struct SinkWorker: Sendable {
    let sink: ResolvedSink
    let client: HTTPClient
    let store: StateStore
    let configuration: NotificationDeliverer.Configuration
    let clock: DeliveryClock
    let limits: LimitLog<NotificationLimit>

    var policy: DeliveryPolicy {
        DeliveryPolicy(attemptsMax: sink.sink.attemptsMax, backoffBaseSeconds: configuration.backoffBaseSeconds,
                       backoffMaxSeconds: configuration.backoffMaxSeconds)
    }

    func run(busy: @Sendable (Bool) async -> Void) async {
        let key = sink.sink.key
        let claimMilliseconds = Int64((Double(sink.sink.timeoutSeconds) + configuration.claimGraceSeconds) * 1000)
        while !Task.isCancelled {
            let now = clock.now()
            var wait = configuration.pollIntervalSeconds
            // Busy from before the claim: a flush never sees a claimed row without its delivery in flight.
            await busy(true)
            do {
                if let entry = try store.claimNotification(sink: key, holder: configuration.holder, now: now, claimMilliseconds: claimMilliseconds) {
                    let outcome = await attempt(entry)
                    guard let outcome else {  // cancelled: the claim expires, the row is sent again later
                        await busy(false)
                        return
                    }
                    try store.recordDelivery(sequence: entry.sequence, outcome, now: clock.now())
                    await busy(false)
                    report(entry, outcome)
                    continue
                }
                await busy(false)
                if let due = try store.nextNotificationDue(sink: key) {
                    wait = min(wait, max(0.05, Double(due.milliseconds(since: now)) / 1000))
                }
            } catch {
                await busy(false)
                limits.record(.store, "notifications: sink \(key): the state database failed: \(error); trying again")
            }
            do { try await clock.sleep(wait) } catch { return }
        }
    }

    /// Sends `entry` once and decides; nil when the task was cancelled meanwhile.
    func attempt(_ entry: OutboxEntry) async -> DeliveryRecord? {
        let event: NotificationEvent
        do {
            event = try NotificationEvent.decode(entry.body)
        } catch {
            return .dead(error: "the stored notification cannot be read: \(error)")
        }
        let request = NotificationFormat.request(event, body: entry.body, to: sink)
        var headers = HTTPHeaders()
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        let http = HTTPRequest(method: .POST, url: request.url, headers: headers, body: request.body,
                               timeoutSeconds: Double(sink.sink.timeoutSeconds), idempotent: false)
        let result: DeliveryPolicy.Attempt
        do {
            let response = try await client.send(http)
            result = .answered(status: response.status, retryAfterSeconds: response.rateLimit.retryAfterSeconds, excerpt: Self.excerpt(response.body))
        } catch let error as HTTPClientError {
            if Task.isCancelled { return nil }
            result = .failed("\(error)".replacingOccurrences(of: request.url.description, with: NotificationSink.redacted(request.url)))
        } catch {
            return nil  // CancellationError
        }
        return policy.decide(result, attempts: entry.attempts, now: clock.now(), random: clock.random())
    }

    private func report(_ entry: OutboxEntry, _ outcome: DeliveryRecord) {
        switch outcome {
        case .sent:
            break
        case .retry(let at, let error):
            limits.record(.attemptFailed, "notifications: \(entry.event) \(entry.id) to \(sink): attempt \(entry.attempts) of "
                          + "\(sink.sink.attemptsMax) failed: \(error); next at \(at.utcDescription)")
        case .dead(let error):
            limits.record(.gaveUp, "notifications: \(entry.event) \(entry.id) to \(sink) given up: \(error)")
        }
    }

    /// The start of an answer's body as printable text, for the error a refusal records.
    static func excerpt(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return String(text.unicodeScalars.map { $0.value >= 0x20 && $0.value != 0x7F ? Character($0) : " " })
            .trimmingCharacters(in: .whitespaces)
    }
}
