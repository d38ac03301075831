import NIOCore
import Testing
import UpkeepCore
@testable import UpkeepProtocol
@testable import UpkeepProtocolCore
import UpkeepTLS

/// Every rule of PROTOCOL.md the client side enforces, scripted against `ClientSession`: inputs
/// in, actions out, no socket. Each test is named after its rule (section number first).
@Suite struct ClientSessionTests {
    static func seconds(_ value: Double) -> NIODeadline { .uptimeNanoseconds(UInt64(value * 1e9)) }

    // MARK: 3 Request ids

    @Test("§3.3 Ids MUST be non-zero and strictly increasing: the client numbers its requests 1, 2, 3")
    func theClientNumbersItsRequestsUpward() throws {
        var session = try Client.established()
        var sent: [UInt32] = []
        for token: UInt64 in 1...3 { sent += session.call(token).requestsSent() }
        #expect(sent == [1, 2, 3])
    }

    @Test("§3.3 a connection whose ids are exhausted MUST be closed by the client and a new one opened")
    func aConnectionWithItsIDsUsedUpIsClosed() throws {
        var session = try Client.established(requestIDsAfter: .max - 2)
        #expect(session.call(1).requestsSent() == [.max - 1])
        let last = session.call(2)
        #expect(last.requestsSent() == [.max] && last.contains(.markUnusable), "the last id is used, then the connection is done")
        let refused = session.call(3)
        guard case .refuseCall(3, .error(let error))? = refused.first else { Issue.record("\(refused)"); return }
        #expect(error.requestWasNotProcessed, "a new connection will take it")
        _ = try session.receive(.response(ResponseEnvelope(.status(statusResult))), .max - 1)
        #expect(try session.receive(.response(ResponseEnvelope(.status(statusResult))), .max).last == .close)
    }

    @Test("§3.3 frames for a finished call are stale; an id never sent is a violation")
    func staleFramesAreDiscardedAndUnknownIDsAreAViolation() throws {
        var session = try Client.established()
        _ = session.call(1)
        _ = try session.receive(.response(ResponseEnvelope(.status(statusResult))), 1)
        #expect(try session.receive(.progress(.step(StepProgress(step: "late", message: ""))), 1) == [])
        #expect(try session.receive(.windowUpdate(incrementBytes: 5), 1) == [])
        let unknown = try session.receive(.response(ResponseEnvelope(.status(statusResult))), 2)
        #expect(unknown.last == .close && unknown.contains(.markUnusable))
        #expect(unknown.framesSent == [], "the client just closes (9.1)")
    }

    // MARK: 4 Control payloads

    @Test("§4 receivers MUST accept any key order and whitespace, and MUST ignore unknown keys")
    func anyValidJSONIsAccepted() throws {
        var session = try Client.established()
        _ = session.call(1, .cordon(CordonRequest(operationID: OperationID(rawValue: "c-1")!)))
        let json = #" { "result" : {"wasUnschedulable":true, "since": "2026"}, "extra": [], "method" : "cordon" } "#
        let actions = session.frameReceived(Frame(type: .response, requestID: 1, payload: ByteBuffer(string: json)), now: Self.seconds(1))
        #expect(actions.first == .deliverResponse(ResponseEnvelope(.cordon(CordonResult(wasUnschedulable: true))), requestID: 1))
    }

    // MARK: 5 Connection setup

    @Test("§5.1 the client sends Hello first and MUST NOT send anything else before HelloReply")
    func helloComesFirstAndAloneUntilHelloReply() throws {
        var session = Client(configuration: ClientConfiguration())
        let hello = Hello(software: "upkeep", streamWindowBytes: StreamWindow.bytesDefault)
        #expect(session.channelSecured() == [.send(.hello(hello), requestID: 0), .startHelloTimer(.seconds(10))])
        // Not even a Pong: a Ping before HelloReply is a violation, answered by closing.
        let actions = try session.receive(.ping(5))
        #expect(actions.framesSent == [] && actions.last == .close)
        guard case .failHello(.protocolViolation)? = actions.first(where: { if case .failHello = $0 { true } else { false } }) else {
            Issue.record("\(actions)")
            return
        }
    }

    @Test("§5.2 the client gives up when HelloReply does not arrive in time")
    func theClientGivesUpWithoutHelloReply() {
        var session = Client(configuration: ClientConfiguration())
        _ = session.channelSecured()
        let actions = session.helloTimerFired()
        #expect(actions.contains(.failHello(.connectFailed("no HelloReply within 10.0 seconds"))) && actions.last == .close)
        #expect(actions.first == .reportHelloTimeout(.seconds(10)), "the bound reached is counted")
        #expect(session.helloTimerFired().isEmpty, "a timer firing after the connection ended is not counted")
    }

    @Test("§5.2 busy on id 0 is a refusal the client SHOULD retry later with backoff")
    func busyOnConnectIsRetriedWithBackoff() throws {
        var session = Client(configuration: ClientConfiguration())
        _ = session.channelSecured()
        let busy = ErrorResponse(.busy, "the agent has 2 connections, its maximum; retry later")
        let actions = try session.receive(.error(busy))
        #expect(actions.contains(.failHello(.remote(busy))))
        #expect(ProtocolError.remote(busy).requestWasNotProcessed && ReconnectingClient.worthRetrying(.remote(busy)))
        var random = SeededGenerator(seed: 14)
        let backoff = Backoff(initialDelay: Duration.milliseconds(100), maximumDelay: Duration.seconds(5), attemptsMax: 8)
        let delays = (1...6).map { backoff.delay(afterAttempt: $0, using: &random) }
        #expect(delays.allSatisfy { $0 > .zero && $0 <= Duration.seconds(5) })
        #expect(delays.last! > delays.first!, "later attempts wait longer: \(delays)")
    }

    @Test("§5.2 the client keeps no more calls in flight than the server runs")
    func slotsAreTheServersLimit() throws {
        var session = try Client.established(concurrentRequestsMax: 2)
        #expect(session.call(1).requestsSent() == [1])
        #expect(session.call(2).requestsSent() == [2])
        #expect(session.call(3) == [.queueCall(token: 3)])
        let freed = try session.receive(.response(ResponseEnvelope(.status(statusResult))), 1, at: Self.seconds(1))
        #expect(freed.requestsSent() == [3], "a finished call lets the next one start")
    }

    // MARK: 6 Requests

    @Test("§6.3 unknown progress kinds MUST be ignored by clients")
    func unknownProgressKindsAreIgnored() throws {
        var session = try Client.established()
        _ = session.call(1)
        let future = Frame(type: .progress, requestID: 1, payload: ByteBuffer(string: #"{"kind":"hologram","x":1}"#))
        #expect(session.frameReceived(future, now: Self.seconds(1)) == [])
        let step = ProgressEvent.step(StepProgress(step: "probing", message: ""))
        #expect(try session.receive(.progress(step), 1) == [.deliverProgress(step, requestID: 1)])
    }

    @Test("§6.4 after an early answer the client stops sending its upload")
    func anEarlyAnswerStopsTheUpload() throws {
        var session = try Client.established(uploadWindowBytes: StreamWindow.bytesMin)
        let stage = stageRequest()
        let started = session.call(1, stage.payload, upload: true)
        #expect(started.last == .startCall(token: 1, requestID: 1, uploadCreditBytes: StreamWindow.bytesMin))
        let piece = ByteBuffer(repeating: 3, count: 1000)
        #expect(session.uploadChunkReady(piece, requestID: 1) == [.sendChunk(piece, requestID: 1)])
        let answer = ResponsePayload.stage(StageResult(sha256: stageSHA, bytes: 1 << 20, alreadyStaged: true))
        _ = try session.receive(.response(ResponseEnvelope(answer)), 1)
        #expect(session.uploadChunkReady(piece, requestID: 1) == [])
        #expect(session.uploadEnded(someDigest, requestID: 1) == [])
    }

    @Test("§6.4 a second Response, or one for another method, is a violation")
    func responsesMustMatchTheirCall() throws {
        var session = try Client.established()
        _ = session.call(1, .backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!)))
        _ = try session.receive(.response(ResponseEnvelope(backupAnswer, download: true)), 1)
        #expect(try session.receive(.response(ResponseEnvelope(backupAnswer, download: true)), 1).last == .close)

        var other = try Client.established()
        _ = other.call(1)
        #expect(try other.receive(.response(ResponseEnvelope(cordonAnswer)), 1).last == .close)
    }

    // MARK: 7 Streams

    @Test("§7.2 the client's upload starts with the server's window and MUST NOT exceed its credit; WindowUpdates add to it")
    func uploadCreditIsTheServersWindow() throws {
        var session = try Client.established(uploadWindowBytes: StreamWindow.bytesMin)
        _ = session.call(1, stageRequest().payload, upload: true)
        let piece = ByteBuffer(repeating: 3, count: StreamWindow.bytesMin)
        #expect(session.uploadChunkReady(piece, requestID: 1) == [.sendChunk(piece, requestID: 1)])
        #expect(try session.receive(.windowUpdate(incrementBytes: 4096), 1) == [.grantUploadCredit(bytes: 4096, requestID: 1)])
        #expect(session.uploadEnded(someDigest, requestID: 1) == [.send(.chunkEnd(someDigest), requestID: 1)], "ChunkEnd uses no credit")
    }

    @Test("§7.2 a download Chunk exceeding the credit, and WindowUpdates of 0 or above the window, are violations")
    func flowControlViolationsCloseTheConnection() throws {
        var configuration = ClientConfiguration()
        configuration.streamWindowBytes = StreamWindow.bytesMin
        var download = try Client.established(configuration)
        _ = download.call(1, .backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!)))
        _ = try download.receive(.response(ResponseEnvelope(backupAnswer, download: true)), 1)
        #expect(download.frameReceived(chunk(StreamWindow.bytesMin, 1), now: Self.seconds(1)).count == 1)
        let overrun = download.frameReceived(chunk(1, 1), now: Self.seconds(1))
        guard case .endCall(let failure?, true, 1)? = overrun.first, case .connectionClosed(let detail) = failure else {
            Issue.record("\(overrun)")
            return
        }
        #expect(detail.contains("window") && overrun.last == .close)

        var zero = try Client.established()
        _ = zero.call(1, stageRequest().payload, upload: true)
        #expect(try zero.receive(.windowUpdate(incrementBytes: 0), 1).last == .close)
        var above = try Client.established()
        _ = above.call(1, stageRequest().payload, upload: true)
        #expect(try above.receive(.windowUpdate(incrementBytes: 1), 1).last == .close)
        var noUpload = try Client.established()
        _ = noUpload.call(1)
        #expect(try noUpload.receive(.windowUpdate(incrementBytes: 1), 1).last == .close)
    }

    @Test("§7.2 receivers SHOULD batch WindowUpdates: one per quarter window consumed")
    func downloadCreditReturnsInQuarterWindows() throws {
        var session = try Client.established()
        _ = session.call(1, .backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!)))
        _ = try session.receive(.response(ResponseEnvelope(backupAnswer, download: true)), 1)
        let quarter = StreamWindow.bytesDefault / 4
        for _ in 0..<4 { _ = session.frameReceived(chunk(quarter / 2, 1), now: Self.seconds(1)) }
        var updates: [Client.Action] = []
        for _ in 0..<4 { updates += session.downloadConsumed(bytes: quarter / 2, requestID: 1) }
        #expect(updates == [.send(.windowUpdate(incrementBytes: UInt32(quarter)), requestID: 1),
                            .send(.windowUpdate(incrementBytes: UInt32(quarter)), requestID: 1)])
    }

    @Test("§7 a download ends with ChunkEnd, which the caller's stream verifies")
    func aDownloadEndsWithChunkEnd() throws {
        var session = try Client.established()
        _ = session.call(1, .backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!)))
        #expect(try session.receive(.response(ResponseEnvelope(backupAnswer, download: true)), 1)
            == [.deliverResponse(ResponseEnvelope(backupAnswer, download: true), requestID: 1)])
        #expect(session.frameReceived(chunk(3, 1), now: Self.seconds(1)) == [.deliverDownloadChunk(ByteBuffer(repeating: 7, count: 3), requestID: 1)])
        #expect(try session.receive(.chunkEnd(someDigest), 1)
            == [.endDownload(someDigest, requestID: 1), .endCall(failure: nil, downloadRunning: true, requestID: 1)])
    }

    // MARK: 8 Deadlines and cancellation

    @Test("§8.1 a client SHOULD send its remaining time plus a small margin as timeoutMs")
    func timeoutMsIsTheRemainingTimePlusAMargin() {
        var session = try! Client.established()
        let actions = session.call(1, deadline: Self.seconds(12.5), now: Self.seconds(2))
        guard case .send(.request(let envelope), 1)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(envelope.timeoutMs == 11_500, "10.5 s left, plus 1 s")
        #expect(session.call(2, deadline: Self.seconds(1), now: Self.seconds(2)) == [.refuseCall(token: 2, .error(.deadlineExceeded(operation: "status")))])
    }

    @Test("§8.1 at its own deadline the client sends Cancel and reports a deadline error")
    func theClientsDeadlineCancels() throws {
        var session = try Client.established()
        _ = session.call(1, .probe(ProbeRequest()))
        #expect(session.callDeadlinePassed(requestID: 1) == [.send(.cancel, requestID: 1),
                                                            .abandonCall(.error(.deadlineExceeded(operation: "probe")), requestID: 1)])
        #expect(session.callDeadlinePassed(requestID: 1) == [], "Cancel goes once")
    }

    @Test("§8.2 after Cancel the client counts the call in flight until its terminal frame, and discards everything else for it")
    func anAbandonedCallHoldsItsSlotUntilItsTerminalFrame() throws {
        var session = try Client.established(concurrentRequestsMax: 1)
        _ = session.call(1, .drain(DrainRequest(operationID: OperationID(rawValue: "d-1")!, timeoutSeconds: 60)))
        #expect(session.abandon(requestID: 1, .cancelled) == [.send(.cancel, requestID: 1), .abandonCall(.cancelled, requestID: 1)])
        #expect(session.call(2) == [.queueCall(token: 2)], "the slot is still taken")
        #expect(try session.receive(.progress(.step(StepProgress(step: "late", message: ""))), 1) == [])
        let end = try session.receive(.error(ErrorResponse(.cancelled, "cancelled by the client")), 1, at: Self.seconds(1))
        #expect(end.first == .endCall(failure: .remote(ErrorResponse(.cancelled, "cancelled by the client")), downloadRunning: false, requestID: 1))
        #expect(end.requestsSent() == [2])
    }

    @Test("§8 a queued call fails at its deadline or when its caller is cancelled, without a request id")
    func queuedCallsAreBounded() throws {
        var configuration = ClientConfiguration()
        configuration.queuedCallsMax = 2
        var session = try Client.established(configuration, concurrentRequestsMax: 1)
        _ = session.call(1)
        #expect(session.call(2) == [.queueCall(token: 2)])
        #expect(session.call(3) == [.queueCall(token: 3)])
        let refused = session.call(4)
        #expect(refused.first == .reportQueueFull(waiting: 2), "the bound reached is counted")
        guard case .refuseCall(4, .error(.notProcessed))? = refused.last else { Issue.record("queue bound"); return }
        #expect(session.waiterDeadlinePassed(token: 2) == [.refuseCall(token: 2, .error(.deadlineExceeded(operation: "status")))])
        #expect(session.waiterCancelled(token: 3) == [.refuseCall(token: 3, .cancelled)])
    }

    // MARK: 9 Errors

    @Test("§9.1 on a violation the client just closes; every call still open fails as connection closed")
    func aViolationClosesAndFailsEveryCall() throws {
        var session = try Client.established(concurrentRequestsMax: 1)
        _ = session.call(1)
        _ = session.call(2)
        let actions = try session.receive(.request(cordon()), 5)
        #expect(actions.framesSent == [])
        guard case .endCall(.connectionClosed?, false, 1)? = actions.first else { Issue.record("\(actions)"); return }
        guard case .refuseCall(2, .error(.notProcessed))? = actions.dropFirst().first else { Issue.record("\(actions)"); return }
        #expect(actions.suffix(2) == [.markUnusable, .close])
        let later = session.call(3)
        guard case .refuseCall(3, .error(let refusal))? = later.first, later.count == 1 else { Issue.record("\(later)"); return }
        #expect(refusal.requestWasNotProcessed, "a call refused by a closed connection was never sent")
    }

    @Test("§9.2 clients MUST treat unknown error codes like internal")
    func unknownErrorCodesAreTreatedLikeInternal() throws {
        var session = try Client.established()
        _ = session.call(1)
        let unknown = ErrorResponse(ErrorCode(rawValue: "quotaExceeded"), "a newer agent's code")
        let actions = try session.receive(.error(unknown), 1)
        #expect(actions == [.endCall(failure: .remote(unknown), downloadRunning: false, requestID: 1)])
        #expect(ProtocolError.remote(unknown).requestWasNotProcessed == ProtocolError.remote(ErrorResponse(.internal, "")).requestWasNotProcessed)
        #expect(!ReconnectingClient.worthRetrying(.remote(unknown)))
    }

    @Test("§9.1 an Error on id 0 ends the whole connection")
    func anErrorOnIDZeroEndsTheConnection() throws {
        var session = try Client.established()
        _ = session.call(1)
        let actions = try session.receive(.error(ErrorResponse(.protocolViolation, "you broke it")))
        #expect(actions.first.map { if case .endCall(.connectionClosed?, _, 1) = $0 { true } else { false } } == true)
        #expect(actions.last == .close)
    }

    // MARK: 10 Ping

    @Test("§10 the client MUST answer a Ping with a Pong carrying the same 8 bytes")
    func theClientAnswersPings() throws {
        var session = try Client.established()
        #expect(try session.receive(.ping(42)) == [.send(.pong(42), requestID: 0)])
    }

    @Test("§10 a side SHOULD NOT have more than one Ping outstanding")
    func onePingAtATime() throws {
        var session = try Client.established()
        #expect(session.pingRequested(token: 1) == [.send(.ping(1), requestID: 0)])
        #expect(session.pingRequested(token: 2) == [], "the second caller waits for the same Pong")
        #expect(try session.receive(.pong(99)) == [], "a Pong for no Ping is ignored")
        #expect(try session.receive(.pong(1)) == [.succeedPings(tokens: [1, 2])])
        #expect(session.pingRequested(token: 3) == [.send(.ping(2), requestID: 0)])
        #expect(session.pingDeadlinePassed(token: 3) == [.failPings(tokens: [3], .deadlineExceeded(operation: "ping"))])
        #expect(session.pingRequested(token: 4) == [.send(.ping(3), requestID: 0)], "a Ping nobody waits for is forgotten")
    }

    // MARK: 11 GoAway

    @Test("§11 after GoAway the client MUST NOT send new Requests; calls above lastRequestID were not processed")
    func afterGoAwayNoNewRequests() throws {
        var session = try Client.established(concurrentRequestsMax: 2)
        _ = session.call(1)
        _ = session.call(2)
        _ = session.call(3)  // queued
        let goAway = try session.receive(.goAway(GoAway(lastRequestID: 1, reason: "shutting down")))
        guard case .refuseCall(3, .error(let refusal))? = goAway.first, refusal.requestWasNotProcessed else {
            Issue.record("\(goAway)")
            return
        }
        #expect(goAway.contains(.markUnusable))
        let late = session.call(4)
        #expect(late.requestsSent() == [] && late.count == 1)
        _ = try session.receive(.response(ResponseEnvelope(.status(statusResult))), 1)
        let closed = session.channelInactive()
        guard case .endCall(let failure?, _, 2)? = closed.first else { Issue.record("\(closed)"); return }
        #expect(failure.requestWasNotProcessed, "request 2 was above lastRequestID")
    }

    @Test("§11 after GoAway the client closes the connection when its last call ends")
    func goAwayClosesWhenTheLastCallEnds() throws {
        var session = try Client.established()
        _ = session.call(1)
        #expect(try session.receive(.goAway(GoAway(lastRequestID: 1, reason: "idle"))) == [.markUnusable])
        #expect(try session.receive(.response(ResponseEnvelope(.status(statusResult))), 1).last == .close)
    }
}

let statusResult = StatusResult(agent: TestAgent.info, unit: UnitStatus(name: "k3s", activeState: "active", subState: "running"),
                                binaryPath: "/usr/local/bin/k3s", binaryFreeBytes: 1, dataDir: "/var/lib/upkeep-agent",
                                dataFreeBytes: 1, staged: [], watchdog: nil, recentOperations: [])

