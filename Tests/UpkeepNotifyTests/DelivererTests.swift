import Foundation
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepPOSIX
import UpkeepNotify
import UpkeepNotifyTestSupport
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

/// The deliverer over real sockets against a receiver on 127.0.0.1: signed deliveries checked
/// by `openssl`, answers of 500, an endpoint that hangs or is not there, bounded retries, and a
/// rollout recorded in full while a delivery hangs.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DelivererTests {
    static let key = "0f1e2d3c4b5a-webhook-key"

    /// A store routing every event to one webhook sink at `url`, and that sink with its key file.
    static func setUp(_ directory: TemporaryDirectory, url: String, timeoutSeconds: Int = 2, attemptsMax: Int = 4,
                      rowsMax: Int = 100) throws -> (StateStore, ResolvedSink) {
        let secret = try directory.write(key + "\n", to: "webhook.secret")
        chmod(secret, 0o600)
        let sink = try NotificationSink(kind: .webhook, key: "hook", position: 1, url: url, secretFile: secret, timeoutSeconds: timeoutSeconds,
                                        attemptsMax: attemptsMax).load()
        let store = try StateStore(path: directory.file("upkeep.db"),
                                   notifications: NotificationRouting(cluster: "lab", routes: [sink.sink.route], rowsMax: rowsMax))
        return (store, sink)
    }

    /// Fast backoff, a short claim: the bounds under test, in seconds rather than minutes.
    static func deliverer(_ store: StateStore, _ sink: ResolvedSink, holder: String = "test pid 1") throws -> NotificationDeliverer {
        try NotificationDeliverer(store: store, sinks: [sink],
                                  configuration: .init(holder: holder, pollIntervalSeconds: 0.05, claimGraceSeconds: 1, backoffBaseSeconds: 0.1,
                                                       backoffMaxSeconds: 0.4))
    }

    /// Runs a deliverer until everything is delivered or given up, at most `seconds`; returns
    /// how many are left and the bounds it reached.
    static func drain(_ store: StateStore, _ sink: ResolvedSink, seconds: Double) async throws -> (left: Int, limits: LimitLog<NotificationLimit>) {
        let deliverer = try Self.deliverer(store, sink)
        await deliverer.start()
        let left = await deliverer.flush(timeoutSeconds: seconds)
        await deliverer.stop()
        return (left, deliverer.limits)
    }

    static func stats(_ store: StateStore) throws -> SinkDeliveryStats {
        try #require(try store.notificationStats(sinks: ["hook"]).first)
    }

    @Test func aWebhookIsDeliveredSignedWithTheEventsIDAndOpenSSLVerifiesIt() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start()
        let (store, sink) = try Self.setUp(directory, url: receiver.url("/upkeep/hook"))
        try store.emit(.rolloutStarted, summary: "Rollout r1 started", details: ["rollout": "r1"], now: .wallClockNow())
        let stored = try #require(try store.outboxEntries(limit: 1).first)
        let (left, _) = try await Self.drain(store, sink, seconds: 20)
        #expect(left == 0)
        await receiver.close()
        let got = receiver.received
        try #require(got.count == 1, "\(got.count) requests")
        #expect(got[0].method == "POST" && got[0].path == "/upkeep/hook")
        #expect(got[0].body == Array(stored.body.utf8), "the stored JSON, byte for byte")
        #expect(got[0].header("x-upkeep-delivery") == stored.id && got[0].json?["id"] as? String == stored.id)
        #expect(got[0].header("x-upkeep-event") == "rollout.started" && got[0].header("content-type") == "application/json")
        #expect(try WebhookReceiver.opensslVerifies(got[0].header("x-upkeep-signature-256"), body: got[0].body, key: Self.key))
        let stats = try Self.stats(store)
        #expect(stats.sent == 1 && stats.pending == 0 && stats.attemptsFailed == 0 && stats.lastSentAt != nil)
        #expect(try store.outboxEntries(limit: 1).first?.state == .sent)
    }

    @Test func answersOf500AreRetriedWithTheSameIDAndBodyUntilOneIsTaken() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(script: [.status(500), .status(503), .close], then: .status(204))
        let (store, sink) = try Self.setUp(directory, url: receiver.url(), attemptsMax: 6)
        try store.emit(.rolloutFinished, summary: "done", details: [:], now: .wallClockNow())
        let (left, _) = try await Self.drain(store, sink, seconds: 30)
        #expect(left == 0)
        await receiver.close()
        let got = receiver.received
        #expect(got.count == 4, "three failures then the delivery: \(got.count)")
        #expect(Set(got.map { $0.header("x-upkeep-delivery") ?? "" }).count == 1 && Set(got.map(\.body)).count == 1, "same id, same bytes")
        let stats = try Self.stats(store)
        #expect(stats.sent == 1 && stats.attemptsFailed == 3 && stats.failed == 0, "\(stats)")
        #expect(try store.outboxEntries(limit: 1).first?.attempts == 4)
    }

    @Test func aRefusalIsGivenUpAtOnceAndSaysWhy() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(then: .status(404))
        let (store, sink) = try Self.setUp(directory, url: receiver.url("/secret-path-token"))
        try store.emit(.rolloutBlocked, summary: "blocked", details: [:], now: .wallClockNow())
        let (left, limits) = try await Self.drain(store, sink, seconds: 20)
        #expect(left == 0)
        await receiver.close()
        #expect(receiver.received.count == 1)
        let entry = try #require(try store.outboxEntries(limit: 1).first)
        #expect(entry.state == .dead && entry.lastError?.hasPrefix("HTTP 404: HTTP 404 from the test receiver (refused") == true, "\(entry.lastError ?? "")")
        #expect(try Self.stats(store).failed == 1)
        #expect(limits.count(.gaveUp) == 1)
    }

    @Test func aHangingEndpointCostsOneTimeoutPerAttemptAndIsGivenUpWithinItsBound() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(then: .hang)
        let (store, sink) = try Self.setUp(directory, url: receiver.url(), timeoutSeconds: 1, attemptsMax: 3)
        try store.emit(.rolloutStarted, summary: "s", details: [:], now: .wallClockNow())
        try store.emit(.rolloutFinished, summary: "f", details: [:], now: .wallClockNow())
        // Three attempts of at most a second each (and short backoffs): the first is given up,
        // the second waits its turn; the backlog is kept, not lost.
        let (waiting, _) = try await Self.drain(store, sink, seconds: 5)
        await receiver.close()
        let rows = try store.outboxEntries(limit: 10)
        let first = try #require(rows.last)
        #expect(first.state == .dead && first.attempts == 3, "\(first)")
        #expect(first.lastError?.contains("gave up after 3 attempts") == true && first.lastError?.contains("did not answer within 1") == true,
                "\(first.lastError ?? "")")
        #expect(waiting >= 1 && rows.first?.state == .pending, "the next notification stays in the outbox")
        #expect(receiver.received.count >= 3 && receiver.received.count <= 5, "\(receiver.received.count)")
        #expect(try Self.stats(store).failed == 1)
    }

    @Test func anUnreachableEndpointIsRetriedWithinBoundsAndItsPathIsNeverShown() async throws {
        let directory = try TemporaryDirectory()
        let port = try unusedLoopbackPort()
        let (store, sink) = try Self.setUp(directory, url: "http://127.0.0.1:\(port)/T000/B000/secret-token", attemptsMax: 3)
        try store.emit(.backupFailed, summary: "b", details: [:], now: .wallClockNow())
        let (left, limits) = try await Self.drain(store, sink, seconds: 20)
        #expect(left == 0)
        let entry = try #require(try store.outboxEntries(limit: 1).first)
        #expect(entry.state == .dead && entry.attempts == 3, "\(entry)")
        let stats = try Self.stats(store)
        #expect(stats.attemptsFailed == 3 && stats.failed == 1)
        for text in [entry.lastError ?? "", stats.lastError ?? ""] {
            #expect(text.contains("127.0.0.1:\(port)") && !text.contains("secret-token"), "\(text)")
        }
        #expect(limits.count(.attemptFailed) == 2 && limits.count(.gaveUp) == 1)
    }

    /// Emitting is an insert: a rollout records every transition (and its notifications) while
    /// the deliverer's request to a hanging endpoint is in flight, and the rows wait for it.
    @Test func aRolloutIsRecordedInFullWhileADeliveryHangs() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(then: .hang)
        let (store, sink) = try Self.setUp(directory, url: receiver.url(), timeoutSeconds: 60)
        try store.emit(.updateAvailable, summary: "k3s v1.31.4+k3s1", details: [:], now: .wallClockNow())
        let deliverer = try Self.deliverer(store, sink)
        await deliverer.start()
        _ = await receiver.wait(for: 1, timeoutSeconds: 20)
        try #require(receiver.received.count == 1, "the first delivery should be hanging now")
        let engine = try RolloutFixtures.record(try RolloutFixtures.engine("r-while-hanging"), world: RolloutFixtures.world(), in: store,
                                                start: .wallClockNow())
        #expect(engine.status == .finished(.completed))
        let rows = try store.outboxEntries(limit: 20)
        #expect(rows.count == 6 && rows.allSatisfy { $0.state == .pending }, "\(rows.map { "\($0.event) \($0.state)" })")
        #expect(receiver.received.count == 1, "nothing overtakes the hanging delivery")
        await deliverer.stop()
        await receiver.close()
    }

    /// A deliverer stopped mid-delivery (its process ends) leaves the row claimed; the next one
    /// sends it once the claim has expired, with the same id and the same signed bytes.
    @Test func aDeliveryCutOffIsSentAgainByTheNextDelivererWithTheSameID() async throws {
        let directory = try TemporaryDirectory()
        let receiver = try await WebhookReceiver.start(then: .hang)
        let (store, sink) = try Self.setUp(directory, url: receiver.url(), timeoutSeconds: 5)
        try store.emit(.rolloutNodeDone, summary: "server-1 done", details: ["node": "server-1"], now: .wallClockNow())
        let first = try Self.deliverer(store, sink, holder: "first pid 1")
        await first.start()
        _ = await receiver.wait(for: 1, timeoutSeconds: 20)
        await first.stop()
        receiver.answer(then: .status(200))
        let reopened = try StateStore(path: directory.file("upkeep.db"), notifications: store.notifications)
        let second = try Self.deliverer(reopened, sink, holder: "second pid 2")
        await second.start()
        // The claim lasts the timeout (5 s) plus the grace: the second waits it out.
        #expect(await second.flush(timeoutSeconds: 60) == 0)
        await second.stop()
        await receiver.close()
        let got = receiver.received
        #expect(got.count == 2 && got[0].body == got[1].body && got[0].header("x-upkeep-delivery") == got[1].header("x-upkeep-delivery"))
        #expect(try WebhookReceiver.opensslVerifies(got[1].header("x-upkeep-signature-256"), body: got[1].body, key: Self.key))
        #expect(try store.outboxEntries(limit: 1).first?.attempts == 2)
    }
}
