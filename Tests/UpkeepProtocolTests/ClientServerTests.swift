import NIOCore
import Synchronization
import Testing
import UpkeepCore
import UpkeepPKI
import UpkeepHTTP
import UpkeepProtocol
import UpkeepTLS

/// Client and server over real sockets on 127.0.0.1, in plaintext and over mutual TLS.
@Suite(.timeLimit(.minutes(1))) struct ClientServerTests {
    @Test(arguments: Transport.allCases)
    func concurrentCallsOnOneConnectionGetTheirOwnAnswers(transport: Transport) async throws {
        let served = try await Served.start(transport)
        let client = try await served.connect()
        #expect(client.hello.agent == TestAgent.info)
        #expect(client.hello.protocolVersion == 1)
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let result = try await client.call(ProbeRequest(expectedK3sVersion: "v\(index)"), deadline: soon())
                    return (index, result.checks.first?.message ?? "")
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 200)
        #expect(answers.allSatisfy { $0.value == "v\($0.key)" })
        await client.close()
        await served.server.shutdown()
    }

    @Test func theHandlerSeesThePeerIdentityFromTheCertificate() async throws {
        let peers = PeerLog()
        let agent = TestAgent { request in
            peers.record(request.peer)
            return Reply(.cordon(CordonResult(wasUnschedulable: false)))
        }
        let served = try await Served.start(.mutualTLS, agent: agent)
        let client = try await served.connect()
        _ = try await client.call(CordonRequest(operationID: "c-1"), deadline: soon())
        #expect(peers.all == [try PeerIdentity(role: .controller, name: "controller-1")])
        await client.close()
        await served.server.shutdown()
    }

    @Test func aClientDiallingTheWrongNodeIsRefusedByTLS() async throws {
        let served = try await Served.start(.mutualTLS)
        let security = ConnectionSecurity.tls(TestCluster.shared.controller,
                                              expecting: .identity(try PeerIdentity(role: .agent, name: "node-2")))
        await #expect {
            _ = try await ProtocolClient.connect(host: "127.0.0.1", port: served.server.port, security: security)
        } throws: { error in
            guard case ProtocolError.tls(.certificateRefused) = error else { return false }
            return true
        }
        await served.server.shutdown()
    }

    @Test func anAgentCertificateCannotCallAnAgent() async throws {
        let served = try await Served.start(.mutualTLS)
        let cluster = TestCluster.shared
        let otherAgent = try TestCluster.context(cluster.ca, PeerIdentity(role: .agent, name: "node-9"))
        let security = ConnectionSecurity.tls(otherAgent, expecting: .identity(try PeerIdentity(role: .agent, name: TestCluster.nodeName)))
        await #expect(throws: ProtocolError.self) {
            _ = try await ProtocolClient.connect(host: "127.0.0.1", port: served.server.port, security: security)
        }
        await served.server.shutdown()
    }

    @Test func aPlaintextClientAgainstATLSAgentFailsCleanly() async throws {
        let served = try await Served.start(.mutualTLS)
        await #expect(throws: ProtocolError.self) {
            _ = try await ProtocolClient.connect(host: "127.0.0.1", port: served.server.port, security: .plaintext,
                                                 configuration: { var c = ClientConfiguration(); c.connectTimeout = .seconds(3); return c }())
        }
        await served.server.shutdown()
    }

    @Test(arguments: Transport.allCases)
    func aCallPastItsDeadlineIsCancelledOnTheAgent(transport: Transport) async throws {
        let cancelled = Gate()
        let agent = TestAgent.hangingProbe(entered: Gate(), cancelled: cancelled)
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()
        let started = ContinuousClock.now
        await #expect(throws: ProtocolError.deadlineExceeded(operation: "probe")) {
            _ = try await client.call(ProbeRequest(), deadline: .now + .milliseconds(300))
        }
        #expect(ContinuousClock.now - started < .seconds(20), "bounded well below the handler's own time")
        await cancelled.wait()  // the agent's handler was cancelled (Cancel frame or timeoutMs)
        // The connection stays usable.
        #expect(try await client.call(CordonRequest(operationID: "after-deadline"), deadline: soon()).wasUnschedulable == false)
        await client.close()
        await served.server.shutdown()
    }

    @Test func cancellingTheCallingTaskSendsCancel() async throws {
        let entered = Gate()
        let cancelled = Gate()
        let served = try await Served.start(agent: TestAgent.hangingProbe(entered: entered, cancelled: cancelled))
        let client = try await served.connect()
        let call = Task { try await client.call(ProbeRequest(), deadline: soon(30)) }
        await entered.wait()
        call.cancel()
        await #expect(throws: CancellationError.self) { _ = try await call.value }
        await cancelled.wait()
        await client.close()
        await served.server.shutdown()
    }

    @Test(arguments: Transport.allCases)
    func progressEventsStreamBeforeTheResult(transport: Transport) async throws {
        let pods = (1...5).map { PodProgress(namespace: "shop", name: "web-\($0)", action: .evicted, message: "evicted") }
        let agent = TestAgent { request in
            for pod in pods { await request.progress(.pod(pod)) }
            return Reply(.drain(DrainResult(evictedPods: pods.count, skippedPods: 0)))
        }
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()
        let (events, result) = try await client.withCall(DrainRequest(operationID: "drain-1", timeoutSeconds: 60),
                                                         deadline: soon()) { call in
            var events: [ProgressEvent] = []
            for await event in call.progress { events.append(event) }
            return (events, try await call.response())
        }
        #expect(events == pods.map { .pod($0) })
        #expect(result == DrainResult(evictedPods: 5, skippedPods: 0))
        await client.close()
        await served.server.shutdown()
    }

    /// Both sides' progress bounds, reached and counted: the agent sends at most its pace, the
    /// controller keeps at most its buffer of what it has not read.
    @Test func progressBeyondEitherSidesBoundIsDroppedAndCounted() async throws {
        let pods = (1...50).map { PodProgress(namespace: "shop", name: "web-\($0)", action: .evicted, message: "evicted") }
        let agent = TestAgent { request in
            for pod in pods { await request.progress(.pod(pod)) }
            return Reply(.drain(DrainResult(evictedPods: pods.count, skippedPods: 0)))
        }
        var server = ServerConfiguration()
        server.progressEventsBurst = 6
        server.progressEventsPerSecond = 1
        let served = try await Served.start(configuration: server, agent: agent)
        var configuration = ClientConfiguration()
        configuration.progressEventsBufferMax = 2
        let client = try await served.connect(configuration)
        let droppedBefore = ProtocolClient.limits.count(.progressEvents)
        let events = try await client.withCall(DrainRequest(operationID: "drain-1", timeoutSeconds: 60), deadline: soon()) { call in
            _ = try await call.response()  // read nothing until the answer: the buffer overflows
            var events: [ProgressEvent] = []
            for await event in call.progress { events.append(event) }
            return events
        }
        #expect(events.count == 2, "the newest \(configuration.progressEventsBufferMax) kept: \(events.count)")
        let sent = 50 - served.server.limits.count(.progressEvents)
        #expect((6...8).contains(sent), "the agent sent its burst (and a refill or two): \(sent)")
        #expect(ProtocolClient.limits.count(.progressEvents) - droppedBefore == sent - 2)
        await client.close()
        await served.server.shutdown()
    }

    @Test func errorResponsesReachTheCallerTyped() async throws {
        struct Boom: Error {}
        let agent = TestAgent { request in
            switch request.method {
            case .cordon: throw ErrorResponse(.conflict, "operation c-1 is running; wait for it")
            case .uncordon: throw Boom()
            default: return try await TestAgent.canned(request)
            }
        }
        let served = try await Served.start(agent: agent)
        let client = try await served.connect()
        await #expect(throws: ProtocolError.remote(ErrorResponse(.conflict, "operation c-1 is running; wait for it"))) {
            _ = try await client.call(CordonRequest(operationID: "c-1"), deadline: soon())
        }
        await #expect {
            _ = try await client.call(UncordonRequest(operationID: "u-1"), deadline: soon())
        } throws: { error in
            guard case ProtocolError.remote(let response) = error else { return false }
            return response.code == .internal
        }
        await #expect(throws: ProtocolError.remote(ErrorResponse(.notImplemented, "the test agent does not serve commit"))) {
            _ = try await client.call(CommitRequest(operationID: "m-1", installOperationID: "i-1"), deadline: soon())
        }
        await client.close()
        await served.server.shutdown()
    }

    @Test func requestsBeyondTheConnectionsLimitWaitOnTheClient() async throws {
        let inside = Counter()
        let agent = TestAgent { request in
            inside.enter()
            defer { inside.leave() }
            try await Task.sleep(for: .milliseconds(20))
            return try await TestAgent.canned(request)
        }
        var configuration = ServerConfiguration()
        configuration.concurrentRequestsPerConnectionMax = 3
        let served = try await Served.start(configuration: configuration, agent: agent)
        let client = try await served.connect()
        #expect(client.hello.concurrentRequestsMax == 3)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<30 {
                group.addTask { _ = try await client.call(ProbeRequest(expectedK3sVersion: "\(index)"), deadline: soon()) }
            }
            try await group.waitForAll()
        }
        #expect(inside.peak == 3)
        await client.close()
        await served.server.shutdown()
    }

    @Test func aServerAtItsConnectionLimitRefusesWithBusy() async throws {
        var configuration = ServerConfiguration()
        configuration.connectionsMax = 2
        let served = try await Served.start(configuration: configuration)
        let first = try await served.connect()
        let second = try await served.connect()
        let busyBefore = ProtocolClient.limits.count(.agentBusy)
        await #expect {
            _ = try await served.connect()
        } throws: { error in
            guard case ProtocolError.remote(let response) = error else { return false }
            return response.code == .busy && (error as? ProtocolError)?.requestWasNotProcessed == true
        }
        #expect(ProtocolClient.limits.count(.agentBusy) == busyBefore + 1, "counted for serve's metrics")
        await first.close()
        #expect(await eventually { served.server.connectionCount < 2 })
        let third = try await served.connect()
        _ = try await third.call(CordonRequest(operationID: "c-3"), deadline: soon())
        for client in [second, third] { await client.close() }
        await served.server.shutdown()
    }

    @Test func idleConnectionsAreClosedButBusyOnesAreNot() async throws {
        let entered = Gate()
        let release = Gate()
        let agent = TestAgent { request in
            if case .probe = request.payload {
                entered.open()
                await release.wait()
            }
            return try await TestAgent.canned(request)
        }
        var configuration = ServerConfiguration()
        // 2 s: on a loaded machine the busy connection's call must reach the server before it idles.
        configuration.idleTimeout = .seconds(2)
        let served = try await Served.start(configuration: configuration, agent: agent)
        let busy = try await served.connect()
        let longCall = Task { try await busy.call(ProbeRequest(), deadline: soon(30)) }
        // Bounded: a call that never arrives fails the test instead of hanging the process.
        try #require(await eventually(within: 30) { entered.isOpen }, "the long call never reached the agent")
        let idle = try await served.connect()
        #expect(await eventually(within: 20) { !idle.isUsable })
        try await Task.sleep(for: .milliseconds(4_500))  // more than two idle timeouts
        #expect(busy.isUsable, "a connection with a request open is not idle")
        release.open()
        _ = try await longCall.value
        #expect(await eventually(within: 20) { !busy.isUsable })
        await served.server.shutdown()
    }

    @Test(arguments: Transport.allCases)
    func gracefulShutdownLetsRunningCallsFinishAndRefusesNewOnes(transport: Transport) async throws {
        let entered = Gate()
        let agent = TestAgent { request in
            if case .probe = request.payload {
                entered.open()
                try await Task.sleep(for: .milliseconds(500))
            }
            return try await TestAgent.canned(request)
        }
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()
        let running = Task { try await client.call(ProbeRequest(expectedK3sVersion: "finishes"), deadline: soon()) }
        await entered.wait()
        let shutdown = Task { await served.server.shutdown(gracePeriod: .seconds(10)) }
        #expect(await eventually(within: 5) { !client.isUsable })  // GoAway arrived
        await #expect {
            _ = try await client.call(CordonRequest(operationID: "late"), deadline: soon())
        } throws: { error in (error as? ProtocolError)?.requestWasNotProcessed == true }
        #expect(try await running.value.checks.first?.message == "finishes")
        await shutdown.value
        await #expect(throws: ProtocolError.self) { _ = try await served.connect() }
    }

    @Test func shutdownCancelsCallsThatOutliveTheGracePeriod() async throws {
        let entered = Gate()
        let agent = TestAgent { request in
            entered.open()
            try await Task.sleep(for: .seconds(60))
            return try await TestAgent.canned(request)
        }
        let served = try await Served.start(agent: agent)
        let client = try await served.connect()
        let running = Task { try await client.call(ProbeRequest(), deadline: soon(30)) }
        await entered.wait()
        let started = ContinuousClock.now
        await served.server.shutdown(gracePeriod: .milliseconds(300))
        #expect(ContinuousClock.now - started < .seconds(20), "bounded well below the handler's own time")
        await #expect {
            _ = try await running.value
        } throws: { error in
            guard case ProtocolError.remote(let response) = error else { return false }
            return response.code == .cancelled
        }
    }

    @Test func theReconnectingClientSurvivesAnAgentRestart() async throws {
        let first = try await Served.start()
        let port = first.server.port
        let client = ReconnectingClient(host: "127.0.0.1", port: port,
                                        backoff: Backoff(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(400), attemptsMax: 30))
        #expect(try await client.call(ProbeRequest(expectedK3sVersion: "before"), deadline: soon()).checks.first?.message == "before")
        await first.server.shutdown()
        // While the agent is down, a call keeps retrying with backoff…
        let during = Task { try await client.call(ProbeRequest(expectedK3sVersion: "during"), deadline: soon(20)) }
        try await Task.sleep(for: .milliseconds(300))
        // …and succeeds once it is back on the same port.
        let second = try await Served.start(port: port)
        #expect(try await during.value.checks.first?.message == "during")
        #expect(try await client.call(ProbeRequest(expectedK3sVersion: "after"), deadline: soon()).checks.first?.message == "after")
        await client.close()
        await second.server.shutdown()
    }

    @Test func theReconnectingClientGivesUpAfterItsAttempts() async throws {
        let served = try await Served.start()
        let port = served.server.port
        await served.server.shutdown()
        let client = ReconnectingClient(host: "127.0.0.1", port: port,
                                        backoff: Backoff(initialDelay: .milliseconds(10), maximumDelay: .milliseconds(40), attemptsMax: 4))
        let started = ContinuousClock.now
        let gaveUpBefore = ProtocolClient.limits.count(.attempts)
        await #expect {
            _ = try await client.call(StatusRequest(), deadline: soon(60))
        } throws: { error in
            guard case ProtocolError.connectFailed = error else { return false }
            return true
        }
        #expect(ContinuousClock.now - started < .seconds(20), "bounded by attempts, not by the 60 s deadline")
        #expect(ProtocolClient.limits.count(.attempts) == gaveUpBefore + 1)
    }

    @Test func backoffGrowsExponentiallyWithinItsBounds() {
        let backoff = Backoff(initialDelay: .milliseconds(100), maximumDelay: .seconds(2), attemptsMax: 10)
        var random = SeededGenerator(seed: 7)
        for attempt in 1...12 {
            let ceiling = min(Duration.milliseconds(100 * (1 << (attempt - 1))), .seconds(2))
            let delay = backoff.delay(afterAttempt: attempt, using: &random)
            #expect(delay >= ceiling / 2 && delay <= ceiling, "attempt \(attempt): \(delay)")
        }
    }

    @Test func pingMeasuresARoundTrip() async throws {
        let served = try await Served.start(.mutualTLS)
        let client = try await served.connect()
        let rtt = try await client.ping(deadline: soon())
        #expect(rtt > .zero && rtt < .seconds(30))
        await client.close()
        await served.server.shutdown()
    }
}

/// Records peers seen by a handler.
final class PeerLog: Sendable {
    private let peers = Mutex<[PeerIdentity?]>([])
    func record(_ peer: PeerIdentity?) { peers.withLock { $0.append(peer) } }
    var all: [PeerIdentity?] { peers.withLock { $0 } }
}
