import Foundation
import NIOCore
import Testing
@testable import UpkeepProtocolCore
import UpkeepProtocol

/// Every rule of PROTOCOL.md the server side enforces, scripted against `ServerSession`: inputs
/// in, actions out, no socket. Each test is named after its rule (section number first).
@Suite struct ServerSessionTests {
    // MARK: 3 Frames and request ids

    @Test("§3.2 a frame sent in the wrong direction is a protocol violation")
    func aFrameInTheWrongDirectionIsAViolation() throws {
        for message: FrameMessage in [.goAway(GoAway(lastRequestID: 0, reason: "confused")),
                                      .response(ResponseEnvelope(cordonAnswer)), .progress(.step(StepProgress(step: "x", message: "y")))] {
            var session = try ServerSession.established()
            try session.open(cordon(), 1)
            let id: UInt32 = message.frameType == .goAway ? 0 : 1
            let actions = try session.receive(message, id)
            #expect(actions.isViolation, "\(message.frameType)")
            #expect(actions.contains(.endRequest(.connectionLost, requestID: 1)), "the open request is stopped")
        }
    }

    @Test("§3.3 Ids MUST be non-zero and strictly increasing: a repeated or lower Request id is a violation")
    func requestIDsMustBeStrictlyIncreasing() throws {
        var session = try ServerSession.established()
        try session.open(cordon("c-5"), 5)
        #expect(try session.receive(.request(cordon("c-5b")), 5).isViolation, "repeated")

        var lower = try ServerSession.established()
        try lower.open(cordon("c-5"), 5)
        _ = lower.handlerAnswered(cordonAnswer, download: false, requestID: 5)
        #expect(try lower.receive(.request(cordon("c-4")), 4).isViolation, "lower, even after 5 finished")

        var zero = try ServerSession.established()
        #expect(zero.frameReceived(Frame(type: .request, requestID: 0, payload: ByteBuffer(string: "{}"))).isViolation)
    }

    @Test("§3.3 gaps are allowed: ids only order requests")
    func requestIDsMayHaveGaps() throws {
        var session = try ServerSession.established()
        try session.open(cordon("c-1"), 1)
        try session.open(cordon("c-7"), 7)
        try session.open(cordon("c-1000"), 1000)
    }

    @Test("§3.3 frames for a finished request are stale and silently discarded")
    func staleFramesAreDiscarded() throws {
        var session = try ServerSession.established()
        try session.open(cordon(), 1)
        #expect(session.handlerAnswered(cordonAnswer, download: false, requestID: 1)
            == [.send(.response(ResponseEnvelope(cordonAnswer)), requestID: 1), .endRequest(.finished, requestID: 1)])
        #expect(try session.receive(.cancel, 1) == [])
        #expect(try session.receive(.windowUpdate(incrementBytes: 100), 1) == [])
        #expect(session.frameReceived(chunk(3, 1)) == [])
        #expect(try session.receive(.chunkEnd(someDigest), 1) == [])
        try session.open(cordon("c-2"), 2)
    }

    @Test("§3.3 a frame for an id never opened is a protocol violation")
    func framesForAnIDNeverOpenedAreAViolation() throws {
        for message: FrameMessage in [.cancel, .windowUpdate(incrementBytes: 1), .chunkEnd(someDigest)] {
            var session = try ServerSession.established()
            try session.open(cordon(), 1)
            #expect(try session.receive(message, 9).isViolation, "\(message.frameType)")
        }
        var session = try ServerSession.established()
        #expect(session.frameReceived(chunk(1, 9)).isViolation)
    }

    @Test("§3.1 and 9.1 a malformed frame ends the connection with protocolViolation on id 0")
    func aMalformedFrameIsAViolation() throws {
        var session = try ServerSession.established()
        try session.open(cordon(), 1)
        let actions = session.frameError(.badMagic(0x47, 0x45))
        #expect(actions.isViolation)
        #expect(actions.contains(.endRequest(.connectionLost, requestID: 1)))
        #expect(session.frameError(.truncatedFrame(leftoverBytes: 3)) == [], "after the close nothing more happens")
    }

    // MARK: 4 Control payloads

    @Test("§4 receivers MUST accept any key order and whitespace, and MUST ignore unknown keys")
    func anyValidJSONIsAccepted() throws {
        var session = try ServerSession.established()
        let json = """
            { "timeoutMs" : 5000 ,
              "params": {"newerField": [1, {"x": null}], "operationID": "c-1"},
              "method":"cordon", "alsoNew": true }
            """
        let actions = session.frameReceived(rawRequest(json, 1))
        #expect(actions == [.startHandler(RequestEnvelope(cordon().payload, timeoutMs: 5000), requestID: 1),
                            .startRequestTimer(milliseconds: 5000, requestID: 1)])
    }

    @Test("§4 and 13 a payload breaking a documented rule is answered badRequest, an unknown method notImplemented")
    func invalidMessagesAreAnsweredNotFatal() throws {
        var session = try ServerSession.established()
        let unknown = session.frameReceived(rawRequest(#"{"method":"reboot","params":{}}"#, 1))
        #expect(unknown.errors == [1: .notImplemented] && unknown.count == 1)
        let invalid = session.frameReceived(rawRequest(#"{"method":"cordon","params":{"operationID":"has space"}}"#, 2))
        #expect(invalid.errors == [2: .badRequest] && invalid.count == 1)
        try session.open(cordon("c-3"), 3)
    }

    @Test("§13 every invalid golden vector is refused as its manifest names it")
    func theInvalidGoldenVectorsAreRefusedAsNamed() throws {
        let directory = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../protocol/vectors").standardized
        struct Manifest: Decodable {
            struct Invalid: Decodable { var file: String; var error: String }
            var invalid: [Invalid]
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: directory.appending(path: "manifest.json")))
        #expect(manifest.invalid.count >= 10)
        for vector in manifest.invalid {
            var bytes = ByteBuffer(bytes: try Data(contentsOf: directory.appending(path: vector.file)))
            var session = try ServerSession.established()
            var actions: [ServerSession.Action] = []
            do {
                while let frame = try FrameDecoder.next(from: &bytes) { actions += session.frameReceived(frame) }
                if bytes.readableBytes > 0 { actions += session.frameError(.truncatedFrame(leftoverBytes: bytes.readableBytes)) }
            } catch {
                actions += session.frameError(error)
            }
            switch vector.error {
            case "invalidMessage": #expect(actions.errors.values.contains(.badRequest), "\(vector.file): \(actions)")
            case "unknownMethod": #expect(actions.errors.values.contains(.notImplemented), "\(vector.file): \(actions)")
            case "truncatedFrame": #expect(!actions.contains(.close), "\(vector.file): the connection is ending anyway")
            default: #expect(actions.isViolation, "\(vector.file) (\(vector.error)): \(actions)")
            }
        }
    }

    // MARK: 5 Connection setup

    @Test("§5.1 and 5.2 the first frame must be Hello; a connection without one is cut at the hello timeout")
    func helloComesFirstAndInTime() throws {
        var session = ServerSession(configuration: ServerConfiguration(), agent: TestAgent.info)
        #expect(session.channelSecured() == [.startHelloTimer(.seconds(10))])
        let actions = try session.receive(.request(cordon()), 1)
        #expect(actions.isViolation && actions.contains(.cancelHelloTimer))

        var silent = ServerSession(configuration: ServerConfiguration(), agent: TestAgent.info)
        _ = silent.channelSecured()
        #expect(silent.helloTimerFired().isViolation)

        var late = try ServerSession.established()
        #expect(late.helloTimerFired() == [], "the timer of a connection past Hello does nothing")
    }

    @Test("§5.2 the server picks the highest version in both ranges and announces its limits")
    func helloReplyPicksTheHighestCommonVersion() throws {
        var configuration = ServerConfiguration()
        configuration.concurrentRequestsPerConnectionMax = 3
        configuration.streamWindowBytes = 1 << 20
        var session = ServerSession(configuration: configuration, agent: TestAgent.info)
        _ = session.channelSecured()
        let actions = try session.receive(.hello(Hello(protocolVersions: 1...9, software: "newer")))
        let reply = HelloReply(protocolVersion: 1, agent: TestAgent.info, streamWindowBytes: 1 << 20, concurrentRequestsMax: 3)
        #expect(actions == [.cancelHelloTimer, .send(.helloReply(reply), requestID: 0)])
    }

    @Test("§5.2 no common version is answered unsupportedVersion on id 0, then close")
    func noCommonVersionIsRefused() throws {
        var session = ServerSession(configuration: ServerConfiguration(), agent: TestAgent.info)
        _ = session.channelSecured()
        let actions = try session.receive(.hello(Hello(protocolVersions: 2...3, software: "from the future")))
        #expect(actions.errors == [0: .unsupportedVersion] && actions.last == .close)
        #expect(try session.receive(.ping(1)) == [], "nothing after the refusal")
    }

    @Test("§5.2 a server at its connection limit sends Error busy on id 0 first, without waiting for Hello, and closes")
    func aConnectionOverTheLimitIsRefusedBusy() throws {
        let busy = ErrorResponse(.busy, "the agent has 2 connections, its maximum; retry later")
        var session = ServerSession(configuration: ServerConfiguration(), agent: TestAgent.info, refusing: busy)
        #expect(session.channelSecured() == [.send(.error(busy), requestID: 0), .close])
        #expect(try session.receive(.hello(Hello(software: "late"))) == [])
        #expect(busy.code.requestWasNotProcessed)
    }

    @Test("§9.1 a second Hello is a protocol violation")
    func aSecondHelloIsAViolation() throws {
        var session = try ServerSession.established()
        #expect(try session.receive(.hello(Hello(software: "again"))).isViolation)
    }

    // MARK: 6 Requests

    @Test("§6.1 upload MUST be true exactly for methods with an upload")
    func theUploadFlagMustMatchTheMethod() throws {
        var session = try ServerSession.established()
        let statusWithUpload = try session.receive(.request(RequestEnvelope(.status(StatusRequest()), upload: true)), 1)
        #expect(statusWithUpload.errors == [1: .badRequest])
        var stage = stageRequest()
        stage.upload = false
        #expect(try session.receive(.request(stage), 2).errors == [2: .badRequest])
        try session.open(stageRequest(), 3)
    }

    @Test("§6.3 servers SHOULD send at most a few Progress frames per second per request")
    func progressIsPaced() throws {
        var session = try ServerSession.established()
        try session.open(cordon(), 1)
        let event = ProgressEvent.step(StepProgress(step: "evicting", message: "pod"))
        func report(_ count: Int, at seconds: Double) -> Int {
            (0..<count).reduce(0) { sent, _ in
                sent + session.progressReported(event, requestID: 1, now: .uptimeNanoseconds(UInt64(seconds * 1e9))).count
            }
        }
        #expect(report(100, at: 1) == ProgressBudget.burstDefault, "a burst, then nothing")
        #expect(report(100, at: 3) == 2 * ProgressBudget.perSecondDefault, "refilled at the pace")
        let end = session.handlerAnswered(cordonAnswer, download: false, requestID: 1)
        #expect(end.first == .reportDroppedProgress(events: 200 - ProgressBudget.burstDefault - 2 * ProgressBudget.perSecondDefault,
                                                    requestID: 1), "what was dropped is counted before the answer goes out: \(end)")
    }

    @Test("§6.4 every accepted Request gets exactly one end, including refused ones")
    func everyRequestGetsExactlyOneEnd() throws {
        var configuration = ServerConfiguration()
        configuration.concurrentRequestsPerConnectionMax = 2
        var session = try ServerSession.established(configuration)
        try session.open(cordon(), 1)
        let bad = session.frameReceived(rawRequest(#"{"method":"drain","params":{}}"#, 2))
        #expect(bad.errors == [2: .badRequest] && bad.count == 1, "a refused request takes no slot")
        try session.open(cordon("c-3"), 3)
        let busy = try session.receive(.request(cordon("c-4")), 4)
        #expect(busy.errors == [4: .busy] && busy.count == 2)
        #expect(busy.first == .reportTooManyRequests(running: 2), "the bound reached is counted")
        // Cancel ends request 1 with one Error; the handler's late answer sends nothing more.
        #expect(try session.receive(.cancel, 1).errors == [1: .cancelled])
        #expect(session.handlerAnswered(cordonAnswer, download: false, requestID: 1) == [])
        #expect(session.handlerFailed(ErrorResponse(.internal, "late"), requestID: 1) == [])
        #expect(session.requestTimerFired(requestID: 1) == [])
        #expect(try session.receive(.cancel, 1) == [], "a Cancel for a stale id is discarded")
    }

    @Test("§6.4 the server MAY answer before the upload ends; the rest of the upload is stale")
    func anEarlyAnswerMakesTheRestOfTheUploadStale() throws {
        var session = try ServerSession.established()
        try session.open(stageRequest(), 1)
        #expect(session.frameReceived(chunk(1000, 1)) == [.deliverUploadChunk(ByteBuffer(repeating: 7, count: 1000), requestID: 1)])
        let stage = ResponsePayload.stage(StageResult(sha256: stageSHA, bytes: 1 << 20, alreadyStaged: true))
        #expect(session.handlerAnswered(stage, download: false, requestID: 1)
            == [.send(.response(ResponseEnvelope(stage)), requestID: 1), .stopUpload(requestID: 1), .endRequest(.finished, requestID: 1)])
        for _ in 0..<40 { #expect(session.frameReceived(chunk(FrameLimits.chunkPayloadBytesMax, 1)) == []) }
        #expect(try session.receive(.chunkEnd(someDigest), 1) == [])
    }

    @Test("§6.4 the handler's answer must be for the request's method")
    func anAnswerForAnotherMethodIsAnInternalError() throws {
        var session = try ServerSession.established()
        try session.open(cordon(), 1)
        let actions = session.handlerAnswered(backupAnswer, download: true, requestID: 1)
        #expect(actions.errors == [1: .internal] && actions.framesSent == [.error])
    }

    // MARK: 7 Streams

    @Test("§7 a Chunk for a request without upload, or after its ChunkEnd, is a violation")
    func chunksOutsideAnUploadAreAViolation() throws {
        var session = try ServerSession.established()
        try session.open(cordon(), 1)
        #expect(session.frameReceived(chunk(1, 1)).isViolation)

        var ended = try ServerSession.established()
        try ended.open(stageRequest(), 1)
        #expect(try ended.receive(.chunkEnd(someDigest), 1) == [.endUpload(someDigest, requestID: 1)])
        #expect(ended.frameReceived(chunk(1, 1)).isViolation)

        var twice = try ServerSession.established()
        try twice.open(stageRequest(), 1)
        _ = try twice.receive(.chunkEnd(someDigest), 1)
        #expect(try twice.receive(.chunkEnd(someDigest), 1).isViolation, "second ChunkEnd")
    }

    @Test("§7.2 a Chunk exceeding the credit is a protocol violation")
    func anUploadBeyondTheWindowIsAViolation() throws {
        var configuration = ServerConfiguration()
        configuration.streamWindowBytes = StreamWindow.bytesMin
        var session = try ServerSession.established(configuration)
        try session.open(stageRequest(), 1)
        #expect(session.frameReceived(chunk(StreamWindow.bytesMin - 1, 1)).count == 1)
        #expect(session.frameReceived(chunk(1, 1)).count == 1, "exactly the window fits")
        #expect(session.frameReceived(chunk(1, 1)).isViolation)
    }

    @Test("§7.2 receivers SHOULD batch WindowUpdates: one per quarter window consumed")
    func uploadCreditReturnsInQuarterWindows() throws {
        var session = try ServerSession.established()
        try session.open(stageRequest(), 1)
        let quarter = StreamWindow.bytesDefault / 4
        for _ in 0..<8 { _ = session.frameReceived(chunk(quarter / 4, 1)) }
        var updates: [ServerSession.Action] = []
        for _ in 0..<8 { updates += session.uploadConsumed(bytes: quarter / 4, requestID: 1) }
        #expect(updates == [.send(.windowUpdate(incrementBytes: UInt32(quarter)), requestID: 1),
                            .send(.windowUpdate(incrementBytes: UInt32(quarter)), requestID: 1)])
        // With credit returned, the client may fill the window again.
        #expect(session.frameReceived(chunk(FrameLimits.chunkPayloadBytesMax, 1)).count == 1)
    }

    @Test("§7.2 the download sender starts with the client's window and MUST NOT exceed its credit; WindowUpdates add to it")
    func downloadCreditIsTheClientsWindow() throws {
        var session = try ServerSession.established(downloadWindowBytes: StreamWindow.bytesMin)
        try session.open(RequestEnvelope(.backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!))), 1)
        #expect(session.handlerAnswered(backupAnswer, download: true, requestID: 1)
            == [.send(.response(ResponseEnvelope(backupAnswer, download: true)), requestID: 1),
                .startDownload(creditBytes: StreamWindow.bytesMin, requestID: 1)])
        let piece = ByteBuffer(repeating: 1, count: StreamWindow.bytesMin)
        #expect(session.downloadChunkReady(piece, requestID: 1) == [.sendChunk(piece, requestID: 1)])
        #expect(try session.receive(.windowUpdate(incrementBytes: 1000), 1) == [.grantDownloadCredit(bytes: 1000, requestID: 1)])
        #expect(session.downloadEnded(someDigest, requestID: 1)
            == [.send(.chunkEnd(someDigest), requestID: 1), .endRequest(.finished, requestID: 1)], "ChunkEnd uses no credit")
    }

    @Test("§7.2 a WindowUpdate of 0, above the window, or without a download is a protocol violation")
    func badWindowUpdatesAreAViolation() throws {
        func downloading() throws -> ServerSession {
            var session = try ServerSession.established()
            try session.open(RequestEnvelope(.backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!))), 1)
            _ = session.handlerAnswered(backupAnswer, download: true, requestID: 1)
            return session
        }
        var zero = try downloading()
        #expect(try zero.receive(.windowUpdate(incrementBytes: 0), 1).isViolation)
        var above = try downloading()
        #expect(try above.receive(.windowUpdate(incrementBytes: 1), 1).isViolation, "credit is already the whole window")
        var none = try ServerSession.established()
        try none.open(cordon(), 1)
        #expect(try none.receive(.windowUpdate(incrementBytes: 1), 1).isViolation)
    }

    @Test("§7.2 credit is per stream: a full window stalls only its own request")
    func creditIsPerStream() throws {
        var session = try ServerSession.established()
        try session.open(stageRequest("s-1"), 1)
        try session.open(stageRequest("s-2"), 2)
        for _ in 0..<(StreamWindow.bytesDefault / FrameLimits.chunkPayloadBytesMax) {
            #expect(session.frameReceived(chunk(FrameLimits.chunkPayloadBytesMax, 1)).count == 1)
        }
        #expect(session.frameReceived(chunk(FrameLimits.chunkPayloadBytesMax, 2)).count == 1, "request 2 has its own window")
    }

    // MARK: 8 Deadlines and cancellation

    @Test("§8.1 with timeoutMs the server stops the work and answers timeout")
    func theRequestsTimeoutStopsItsHandler() throws {
        var session = try ServerSession.established()
        let envelope = RequestEnvelope(.probe(ProbeRequest()), timeoutMs: 250)
        #expect(try session.receive(.request(envelope), 1) == [.startHandler(envelope, requestID: 1),
                                                              .startRequestTimer(milliseconds: 250, requestID: 1)])
        let actions = session.requestTimerFired(requestID: 1)
        #expect(actions.first == .endRequest(.stopped, requestID: 1) && actions.errors == [1: .timeout])
    }

    @Test("§8.2 Cancel stops the request's work and answers cancelled, ending a running download the same way")
    func cancelStopsTheHandler() throws {
        var session = try ServerSession.established()
        try session.open(RequestEnvelope(.backup(BackupRequest(operationID: OperationID(rawValue: "b-1")!))), 1)
        _ = session.handlerAnswered(backupAnswer, download: true, requestID: 1)
        let actions = try session.receive(.cancel, 1)
        #expect(actions.first == .endRequest(.stopped, requestID: 1) && actions.errors == [1: .cancelled])
        #expect(session.downloadChunkReady(ByteBuffer(bytes: [1]), requestID: 1) == [], "the download's late chunks are not sent")
    }

    // MARK: 10 Ping

    @Test("§10 the server MUST answer a Ping with a Pong carrying the same 8 bytes")
    func pingIsAnsweredWithTheSameBytes() throws {
        var session = try ServerSession.established()
        #expect(try session.receive(.ping(0xDEAD_BEEF)) == [.send(.pong(0xDEAD_BEEF), requestID: 0)])
        #expect(try session.receive(.pong(1)) == [], "an unsolicited Pong is ignored")
    }

    // MARK: 11 GoAway, idle, shutdown

    @Test("§11 after GoAway, Requests above lastRequestID are answered shuttingDown; those below run to completion")
    func goAwayRefusesNewRequestsAndLetsRunningOnesFinish() throws {
        var session = try ServerSession.established()
        try session.open(cordon("c-1"), 1)
        try session.open(cordon("c-2"), 2)
        #expect(session.goAway(reason: "shutting down") == [.send(.goAway(GoAway(lastRequestID: 2, reason: "shutting down")), requestID: 0)])
        let late = try session.receive(.request(cordon("c-3")), 3)
        #expect(late.errors == [3: .shuttingDown] && ErrorCode.shuttingDown == .shuttingDown && ErrorCode.shuttingDown.requestWasNotProcessed)
        #expect(session.handlerAnswered(cordonAnswer, download: false, requestID: 1).last == .endRequest(.finished, requestID: 1))
        #expect(session.handlerAnswered(cordonAnswer, download: false, requestID: 2).last == .close, "closes after the last one")
    }

    @Test("§11 graceful shutdown: after the grace period running requests are answered cancelled and the connection closes")
    func forceCloseCancelsWhatStillRuns() throws {
        var session = try ServerSession.established()
        try session.open(cordon("c-1"), 1)
        _ = session.goAway(reason: "shutting down")
        let actions = session.forceClose(reason: "the agent shut down")
        #expect(actions.first == .endRequest(.stopped, requestID: 1) && actions.errors == [1: .cancelled] && actions.last == .close)
    }

    @Test("§11 an idle connection is closed after GoAway idle; one with a request open is not idle")
    func idleConnectionsGoAway() throws {
        var busy = try ServerSession.established()
        try busy.open(cordon(), 1)
        #expect(busy.idleTimerFired() == [])
        var idle = try ServerSession.established()
        #expect(idle.idleTimerFired() == [.send(.goAway(GoAway(lastRequestID: 0, reason: "idle")), requestID: 0), .close])
    }

    @Test("§11 GoAway before Hello closes at once")
    func goAwayBeforeHelloCloses() {
        var session = ServerSession(configuration: ServerConfiguration(), agent: TestAgent.info)
        _ = session.channelSecured()
        #expect(session.goAway(reason: "shutting down") == [.cancelHelloTimer, .close])
    }

    @Test("§9.1 when the connection ends every open request is stopped")
    func aLostConnectionStopsEveryRequest() throws {
        var session = try ServerSession.established()
        try session.open(cordon("c-1"), 1)
        try session.open(stageRequest(), 2)
        #expect(session.channelInactive() == [.endRequest(.connectionLost, requestID: 1), .endRequest(.connectionLost, requestID: 2)])
        #expect(session.handlerAnswered(cordonAnswer, download: false, requestID: 1) == [])
    }
}
