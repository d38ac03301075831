import NIOCore

/// The client's side of one connection's session rules (PROTOCOL.md sections 3.3 and 5 to 11):
/// Hello, the phase of the connection, request ids and slots, the calls waiting for a slot,
/// flow-control credit, cancellation, deadlines, pings and GoAway.
///
/// A plain value: each input (a frame received, a caller starting or abandoning a call, a
/// channel event, a timer) is one mutating method returning the actions to carry out, in
/// order. It never touches the channel, a clock (the time comes in as `now`) or a promise, so
/// every rule is tested by feeding inputs and reading actions. `ClientConnectionHandler` only
/// carries the actions out. Calls are named by the caller's `token` until they have a request
/// id. An input the rules make impossible is a `preconditionFailure`.
public struct ClientSession<TLSFailure: Error & Equatable & Sendable> {
    public typealias Failure = SessionError<TLSFailure>

    /// What a caller (of a call, its start or a ping) gets instead of a result.
    public enum CallFailure: Equatable, Sendable {
        /// The caller's own task was cancelled: it gets `CancellationError`.
        case cancelled
        case error(Failure)
    }

    /// What the connection must do, in the order given.
    public enum Action: Equatable {
        /// Write a control or fixed-layout frame.
        case send(FrameMessage, requestID: UInt32)
        /// Write a Chunk frame of an upload.
        case sendChunk(ByteBuffer, requestID: UInt32)
        /// Close the connection.
        case close
        /// New calls must not use this connection any more.
        case markUnusable
        case startHelloTimer(Duration)
        case cancelHelloTimer
        case succeedHello(HelloReply)
        case failHello(Failure)
        /// The call of `token` waits for a free slot, until its deadline.
        case queueCall(token: UInt64)
        /// The call of `token` has `requestID` and its Request was sent: hand it to its caller,
        /// arm its deadline, and for an upload let it send within `uploadCreditBytes`.
        case startCall(token: UInt64, requestID: UInt32, uploadCreditBytes: Int?)
        /// The call of `token` never started.
        case refuseCall(token: UInt64, CallFailure)
        /// A call was refused at once: every slot busy and `waiting` calls queued, the
        /// `queuedCallsMax` (for the log and the bound's counter).
        case reportQueueFull(waiting: Int)
        /// No HelloReply within `connectTimeout` (for the log and the bound's counter).
        case reportHelloTimeout(Duration)
        case deliverResponse(ResponseEnvelope, requestID: UInt32)
        case deliverProgress(ProgressEvent, requestID: UInt32)
        case deliverDownloadChunk(ByteBuffer, requestID: UInt32)
        /// The download's ChunkEnd: the caller's stream verifies it and ends.
        case endDownload(ChunkEndPayload, requestID: UInt32)
        /// The server returned upload credit.
        case grantUploadCredit(bytes: Int, requestID: UInt32)
        /// The caller no longer waits (Cancel was sent): what it still waits for fails with
        /// the failure. The slot stays taken until the terminal frame.
        case abandonCall(CallFailure, requestID: UInt32)
        /// The call's terminal frame arrived (or the connection ended): disarm its deadline and
        /// end what is still open, with `failure` (nil: the call completed). `downloadRunning`
        /// says whether a download stream was announced (else it ends empty). Frees its slot.
        case endCall(failure: Failure?, downloadRunning: Bool, requestID: UInt32)
        case succeedPings(tokens: [UInt64])
        case failPings(tokens: [UInt64], Failure)
    }

    enum State {
        /// Waiting for TLS (or for channelActive).
        case securing
        case awaitingHelloReply
        case established(Connection)
        /// GoAway arrived (or this connection used up its request ids): no new calls; closes
        /// when the calls in flight have ended. Calls above `lastRequestID` were not processed.
        case goingAway(Connection, lastRequestID: UInt32, reason: String)
        case closed(Failure)
        /// Only while a method mutates a connection in place (so it is not copied).
        case modifying
    }

    struct Connection {
        var calls: [UInt32: Call] = [:]
        var waiters = CircularBuffer<Waiter>()
        /// The newest request id used (0: none yet).
        var lastRequestID: UInt32 = 0
        let slotsMax: Int
        let uploadWindowBytes: Int
        var ping: Ping?
        var nextPingOpaque: UInt64 = 1
    }

    /// A call between its Request and its terminal frame.
    struct Call {
        let method: Method
        var responded = false
        /// Set by a Response with a download.
        var download: ReceiveWindow?
        /// Set for a call with an upload.
        var upload: SendCredit?
        /// Cancel was sent: only the terminal frame is awaited, to free the slot.
        var abandoned = false
    }

    /// A call waiting for a free slot.
    struct Waiter {
        let token: UInt64
        let payload: RequestPayload
        let upload: Bool
        let deadline: NIODeadline
    }

    /// The Ping outstanding and the callers waiting for its Pong.
    struct Ping {
        let opaque: UInt64
        var tokens: [UInt64]
    }

    enum Step {
        case act([Action])
        case violation(String)
    }

    /// How much later than the caller's deadline the agent stops the work (`timeoutMs`,
    /// PROTOCOL.md 8.1), so that the caller's Cancel normally arrives first.
    public static var agentDeadlineMarginMs: Int64 { 1_000 }

    public let configuration: ClientConfiguration
    /// The request id before the first one (0: ids start at 1).
    private let requestIDsAfter: UInt32
    private var state = State.securing

    public init(configuration: ClientConfiguration) {
        self.init(configuration: configuration, requestIDsAfter: 0)
    }

    /// Ids only order requests, so tests may start near the end of their range.
    init(configuration: ClientConfiguration, requestIDsAfter: UInt32) {
        self.configuration = configuration
        self.requestIDsAfter = requestIDsAfter
    }

    // MARK: Connection events

    /// TLS finished (or, in plaintext, the connection is up): send Hello, and nothing else
    /// until HelloReply (PROTOCOL.md 5.1).
    public mutating func channelSecured() -> [Action] {
        switch state {
        case .securing:
            state = .awaitingHelloReply
            let hello = Hello(software: configuration.software, streamWindowBytes: configuration.streamWindowBytes)
            return [.send(.hello(hello), requestID: 0), .startHelloTimer(configuration.connectTimeout)]
        case .closed:
            return []
        case .awaitingHelloReply, .established, .goingAway:
            preconditionFailure("the connection was secured twice")
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    public mutating func helloTimerFired() -> [Action] {
        guard case .awaitingHelloReply = state else { return [] }
        return [.reportHelloTimeout(configuration.connectTimeout)] + fail(.connectFailed("no HelloReply within \(configuration.connectTimeout)"))
    }

    /// The frame layer refused the bytes: the connection ends (the client just closes, 9.1).
    public mutating func frameError(_ error: FrameError) -> [Action] {
        if case .truncatedFrame = error { return [] }  // the connection is ending; calls fail as closed
        return fail(.protocolViolation(error.description))
    }

    public mutating func tlsFailed(_ error: TLSFailure) -> [Action] {
        fail(.tls(error))
    }

    /// Any other channel error.
    public mutating func channelFailed(_ detail: String) -> [Action] {
        fail(.connectionClosed(detail))
    }

    /// The caller closes the connection; calls in flight fail.
    public mutating func close() -> [Action] {
        fail(.connectionClosed("the client closed the connection"))
    }

    public mutating func channelInactive() -> [Action] {
        if case .closed = state { return [] }
        return tearDown(.connectionClosed("the agent closed the connection"))
    }

    // MARK: Frames

    public mutating func frameReceived(_ frame: Frame, now: NIODeadline) -> [Action] {
        switch state {
        case .closed:
            return []
        case .securing:
            return fail(.protocolViolation("a frame arrived before the connection was secured"))
        case .awaitingHelloReply:
            return helloReply(frame)
        case .established, .goingAway:
            let message: FrameMessage
            do {
                message = try frame.message()
            } catch {
                if frame.type == .progress { return [] }  // an unknown progress kind is ignored (6.3)
                return fail(.protocolViolation("\(frame.type) for request \(frame.requestID): \(error)"))
            }
            switch message {
            case .error(let error) where frame.requestID == 0:
                return fail(.remote(error))
            case .goAway(let goAway):
                return modify(goAwayAfter: goAway.lastRequestID) { connection in
                    connection.refuseWaiters(.notProcessed("the agent is going away (\(goAway.reason))"))
                }
            default:
                let configuration = configuration
                return modify { connection in connection.receive(message, frame, now: now, configuration: configuration) }
            }
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    private mutating func helloReply(_ frame: Frame) -> [Action] {
        do {
            switch try frame.message() {
            case .helloReply(let reply):
                try reply.validate()
                let slots = max(1, min(configuration.concurrentRequestsMax, reply.concurrentRequestsMax))
                state = .established(Connection(lastRequestID: requestIDsAfter, slotsMax: slots, uploadWindowBytes: reply.streamWindowBytes))
                return [.cancelHelloTimer, .succeedHello(reply)]
            case .error(let error) where frame.requestID == 0:
                return fail(.remote(error))
            default:
                return fail(.protocolViolation("expected HelloReply, got \(frame.type)"))
            }
        } catch {
            return fail(.protocolViolation("invalid HelloReply: \(error)"))
        }
    }

    // MARK: Calls

    /// A caller starts a call: sent when a slot is free, else queued (bounded) until one is.
    public mutating func startCall(token: UInt64, _ payload: RequestPayload, upload: Bool, deadline: NIODeadline,
                                   now: NIODeadline) -> [Action] {
        switch state {
        case .closed(let reason):
            // Never sent, so certainly not processed, whatever closed the connection.
            return [.refuseCall(token: token, .error(.notProcessed("the connection is closed: \(reason)")))]
        case .goingAway(_, _, let reason):
            return [.refuseCall(token: token, .error(.notProcessed(reason)))]
        case .established:
            let waiter = Waiter(token: token, payload: payload, upload: upload, deadline: deadline)
            let queuedCallsMax = configuration.queuedCallsMax
            return modify { connection in
                if connection.calls.count < connection.slotsMax && connection.waiters.isEmpty {
                    return .act(connection.launch(waiter, now: now))
                }
                guard connection.waiters.count < queuedCallsMax else {
                    return .act([.reportQueueFull(waiting: connection.waiters.count), .refuseCall(token: token, .error(.notProcessed(
                        "\(connection.waiters.count) calls already wait for a slot on this connection")))])
                }
                connection.waiters.append(waiter)
                return .act([.queueCall(token: token)])
            }
        case .securing, .awaitingHelloReply:
            preconditionFailure("calls start only after HelloReply")
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// A queued call's deadline passed before a slot was free.
    public mutating func waiterDeadlinePassed(token: UInt64) -> [Action] {
        removeWaiter(token) { .error(.deadlineExceeded(operation: $0.payload.method.rawValue)) }
    }

    /// A queued call's caller was cancelled.
    public mutating func waiterCancelled(token: UInt64) -> [Action] {
        removeWaiter(token) { _ in .cancelled }
    }

    private mutating func removeWaiter(_ token: UInt64, _ failure: (Waiter) -> CallFailure) -> [Action] {
        modifyOpen { connection in
            guard let index = connection.waiters.firstIndex(where: { $0.token == token }) else { return .act([]) }
            let waiter = connection.waiters.remove(at: index)
            return .act([.refuseCall(token: token, failure(waiter))])
        }
    }

    /// The call's deadline passed: Cancel, and the caller gets `deadlineExceeded` (8.1).
    public mutating func callDeadlinePassed(requestID id: UInt32) -> [Action] {
        modifyOpen { connection in
            guard let call = connection.calls[id] else { return .act([]) }
            return .act(connection.abandon(id, .error(.deadlineExceeded(operation: call.method.rawValue))))
        }
    }

    /// The caller no longer wants call `id` (cancelled, done early, failed): send Cancel (8.2).
    public mutating func abandon(requestID id: UInt32, _ failure: CallFailure) -> [Action] {
        modifyOpen { connection in .act(connection.abandon(id, failure)) }
    }

    /// The upload produced a chunk within the credit it was given.
    public mutating func uploadChunkReady(_ bytes: ByteBuffer, requestID id: UInt32) -> [Action] {
        modifyOpen { connection in
            guard var call = connection.calls[id], !call.abandoned, !call.responded, var credit = call.upload else { return .act([]) }
            credit.spend(bytes.readableBytes)
            call.upload = credit
            connection.calls[id] = call
            return .act([.sendChunk(bytes, requestID: id)])
        }
    }

    public mutating func uploadEnded(_ end: ChunkEndPayload, requestID id: UInt32) -> [Action] {
        modifyOpen { connection in
            guard let call = connection.calls[id], !call.abandoned, !call.responded else { return .act([]) }
            return .act([.send(.chunkEnd(end), requestID: id)])
        }
    }

    /// The upload's source threw: the call cannot complete.
    public mutating func uploadFailed(_ detail: String, requestID id: UInt32) -> [Action] {
        modifyOpen { connection in
            guard let call = connection.calls[id], !call.abandoned, !call.responded else { return .act([]) }
            return .act(connection.abandon(id, .error(.uploadFailed(detail))))
        }
    }

    /// The caller's code took `bytes` of download out of its stream.
    public mutating func downloadConsumed(bytes: Int, requestID id: UInt32) -> [Action] {
        modifyOpen { connection in
            guard var call = connection.calls[id], !call.abandoned, var window = call.download else { return .act([]) }
            let increment = window.consume(bytes)
            call.download = window
            connection.calls[id] = call
            return .act(increment.map { [.send(.windowUpdate(incrementBytes: $0), requestID: id)] } ?? [])
        }
    }

    // MARK: Pings

    /// A caller wants a round trip. At most one Ping is outstanding (PROTOCOL.md 10): callers
    /// arriving meanwhile wait for its Pong.
    public mutating func pingRequested(token: UInt64) -> [Action] {
        switch state {
        case .closed(let reason):
            return [.failPings(tokens: [token], reason.asCallFailure)]
        case .established, .goingAway:
            return modifyOpen { connection in
                if var ping = connection.ping {
                    ping.tokens.append(token)
                    connection.ping = ping
                    return .act([])
                }
                let opaque = connection.nextPingOpaque
                connection.nextPingOpaque += 1
                connection.ping = Ping(opaque: opaque, tokens: [token])
                return .act([.send(.ping(opaque), requestID: 0)])
            }
        case .securing, .awaitingHelloReply:
            preconditionFailure("pings start only after HelloReply")
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// A ping caller's deadline passed. When no caller waits any more the Ping is forgotten
    /// (a late Pong is ignored), so that a Pong that never comes cannot hold later pings.
    public mutating func pingDeadlinePassed(token: UInt64) -> [Action] {
        modifyOpen { connection in
            guard var ping = connection.ping, let index = ping.tokens.firstIndex(of: token) else { return .act([]) }
            ping.tokens.remove(at: index)
            connection.ping = ping.tokens.isEmpty ? nil : ping
            return .act([.failPings(tokens: [token], .deadlineExceeded(operation: "ping"))])
        }
    }

    // MARK: Helpers

    /// Runs `body` on the connection when it is established or going away; nothing otherwise.
    private mutating func modifyOpen(_ body: (inout Connection) -> Step) -> [Action] {
        switch state {
        case .established, .goingAway:
            return modify(body)
        case .closed, .securing, .awaitingHelloReply:
            return []
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// Runs `body` on the open connection, then settles the phase: a violation closes; GoAway
    /// (`goAwayAfter`, its lastRequestID) or used-up ids go away; going away with no call left
    /// closes.
    private mutating func modify(goAwayAfter: UInt32? = nil, _ body: (inout Connection) -> Step) -> [Action] {
        var connection: Connection
        var away: (lastRequestID: UInt32, reason: String)?
        switch state {
        case .established(let open):
            connection = open
        case .goingAway(let open, let last, let reason):
            connection = open
            away = (last, reason)
        case .closed, .securing, .awaitingHelloReply, .modifying:
            preconditionFailure("modify runs only on an open connection")
        }
        state = .modifying
        var actions: [Action]
        switch body(&connection) {
        case .violation(let detail):
            let reason = Failure.protocolViolation(detail)
            state = .closed(reason)
            return Self.endAll(connection, reason, goAwayAfter: away?.lastRequestID) + [.markUnusable, .close]
        case .act(let done):
            actions = done
        }
        if let goAwayAfter {
            if away == nil { actions.append(.markUnusable) }
            away = (min(goAwayAfter, away?.lastRequestID ?? .max), "the agent sent GoAway")
        } else if away == nil, connection.lastRequestID == .max {
            // Ids are exhausted: the client must close this connection and open a new one (3.3).
            actions.append(.markUnusable)
            actions += connection.refuseWaiters(.notProcessed("request ids of this connection are used up; open a new one")).actions
            away = (.max, "request ids of this connection are used up; open a new one")
        }
        guard let away else {
            state = .established(connection)
            return actions
        }
        if connection.calls.isEmpty {
            state = .closed(.notProcessed(away.reason))
            return actions + [.close]
        }
        state = .goingAway(connection, lastRequestID: away.lastRequestID, reason: away.reason)
        return actions
    }

    /// The connection cannot go on: end everything with `reason`, and close.
    private mutating func fail(_ reason: Failure) -> [Action] {
        if case .closed = state { return [] }
        return tearDown(reason) + [.close]
    }

    /// Ends what still waits on the connection with `reason` (PROTOCOL.md 9.1 and 11).
    private mutating func tearDown(_ reason: Failure) -> [Action] {
        var actions: [Action]
        switch state {
        case .securing, .awaitingHelloReply:
            actions = [.cancelHelloTimer, .failHello(reason.connectFailure)]
        case .established(let connection):
            actions = Self.endAll(connection, reason, goAwayAfter: nil)
        case .goingAway(let connection, let last, _):
            actions = Self.endAll(connection, reason, goAwayAfter: last)
        case .closed:
            return []
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
        state = .closed(reason)
        return actions + [.markUnusable]
    }

    private static func endAll(_ connection: Connection, _ reason: Failure, goAwayAfter last: UInt32?) -> [Action] {
        var actions: [Action] = connection.calls.keys.sorted().map { id in
            let failure: Failure = if let last, id > last {
                .notProcessed("the agent sent GoAway after request \(last)")
            } else {
                reason.asCallFailure
            }
            return .endCall(failure: failure, downloadRunning: connection.calls[id]?.download != nil, requestID: id)
        }
        actions += connection.waiters.map {
            .refuseCall(token: $0.token, .error(.notProcessed("the connection closed before the call could start")))
        }
        if let ping = connection.ping { actions.append(.failPings(tokens: ping.tokens, reason.asCallFailure)) }
        return actions
    }
}

extension ClientSession.Connection {
    typealias Action = ClientSession.Action
    typealias Step = ClientSession.Step
    typealias Failure = ClientSession.Failure

    /// A frame of an open connection other than a connection-level Error or GoAway.
    mutating func receive(_ message: FrameMessage, _ frame: Frame, now: NIODeadline, configuration: ClientConfiguration) -> Step {
        let id = frame.requestID
        switch message {
        case .ping(let opaque):
            return .act([.send(.pong(opaque), requestID: 0)])
        case .pong(let opaque):
            guard let ping, ping.opaque == opaque else { return .act([]) }
            self.ping = nil
            return .act([.succeedPings(tokens: ping.tokens)])
        case .hello, .helloReply, .request, .cancel:
            return .violation("\(frame.type) is not a frame a server sends on an open connection")
        case .goAway:
            preconditionFailure("the session handles GoAway itself")
        case .error where id == 0:
            preconditionFailure("the session handles connection-level errors itself")
        case .error, .response, .progress, .chunk, .chunkEnd, .windowUpdate:
            break
        }
        guard var call = calls[id] else {
            return id > lastRequestID ? .violation("\(frame.type) for request \(id), which was never sent") : .act([])
        }
        switch message {
        case .error(let error):
            return .act(end(id, failure: .remote(error), now: now))
        case .response(let envelope):
            guard !call.responded else { return .violation("second Response for request \(id)") }
            guard envelope.payload.method == call.method else {
                return .violation("request \(id) is \(call.method) but was answered as \(envelope.payload.method)")
            }
            call.responded = true
            guard envelope.download else {
                return .act([.deliverResponse(envelope, requestID: id)] + end(id, failure: nil, now: now))
            }
            // Abandoned or not, the stream ends with ChunkEnd or Error; the slot is held until then.
            call.download = ReceiveWindow(windowBytes: configuration.streamWindowBytes)
            calls[id] = call
            return .act([.deliverResponse(envelope, requestID: id)])
        case .progress(let event):
            return .act(call.abandoned ? [] : [.deliverProgress(event, requestID: id)])
        case .chunk:
            guard var window = call.download else { return .violation("Chunk for request \(id) before a Response with download") }
            if call.abandoned { return .act([]) }
            guard window.receive(frame.payload.readableBytes) else {
                return .violation("request \(id)'s download exceeds the window of \(window.windowBytes) bytes")
            }
            call.download = window
            calls[id] = call
            return .act([.deliverDownloadChunk(frame.payload, requestID: id)])
        case .chunkEnd(let end):
            guard call.download != nil else { return .violation("ChunkEnd for request \(id) before a Response with download") }
            return .act([.endDownload(end, requestID: id)] + self.end(id, failure: nil, now: now))
        case .windowUpdate(let increment):
            guard var credit = call.upload else { return .violation("WindowUpdate for request \(id), which has no upload") }
            guard increment > 0 else { return .violation("WindowUpdate of 0 bytes for request \(id)") }
            guard credit.add(increment) else {
                return .violation("WindowUpdate of \(increment) bytes raises request \(id)'s credit above the window of \(credit.windowBytes) bytes")
            }
            call.upload = credit
            calls[id] = call
            return .act([.grantUploadCredit(bytes: Int(increment), requestID: id)])
        default:
            preconditionFailure("only per-request frames get here")
        }
    }

    /// Sends the Request of `waiter` under the next request id.
    mutating func launch(_ waiter: ClientSession.Waiter, now: NIODeadline) -> [Action] {
        precondition(lastRequestID < .max, "a connection with its ids used up is going away")
        let method = waiter.payload.method
        let remaining = waiter.deadline - now
        guard remaining > .zero else {
            return [.refuseCall(token: waiter.token, .error(.deadlineExceeded(operation: method.rawValue)))]
        }
        lastRequestID += 1
        let id = lastRequestID
        // The agent's own deadline is a backstop for a Cancel that never arrives: it lies a
        // margin after ours, so that our Cancel (and deadline error) normally comes first.
        let timeoutMs = max(1, remaining.nanoseconds / 1_000_000) + ClientSession.agentDeadlineMarginMs
        calls[id] = ClientSession.Call(method: method, upload: waiter.upload ? SendCredit(windowBytes: uploadWindowBytes) : nil)
        return [.send(.request(RequestEnvelope(waiter.payload, upload: waiter.upload, timeoutMs: timeoutMs)), requestID: id),
                .startCall(token: waiter.token, requestID: id, uploadCreditBytes: waiter.upload ? uploadWindowBytes : nil)]
    }

    /// Call `id` got its terminal frame: end it, free its slot, start waiting calls.
    mutating func end(_ id: UInt32, failure: Failure?, now: NIODeadline) -> [Action] {
        guard let call = calls.removeValue(forKey: id) else { return [] }
        var actions: [Action] = [.endCall(failure: failure, downloadRunning: call.download != nil, requestID: id)]
        while calls.count < slotsMax, lastRequestID < .max, let waiter = waiters.popFirst() {
            actions += launch(waiter, now: now)
        }
        return actions
    }

    /// The caller no longer wants call `id`: Cancel it (once).
    mutating func abandon(_ id: UInt32, _ failure: ClientSession.CallFailure) -> [Action] {
        guard var call = calls[id], !call.abandoned else { return [] }
        call.abandoned = true
        calls[id] = call
        return [.send(.cancel, requestID: id), .abandonCall(failure, requestID: id)]
    }

    /// Refuses every waiting call with `failure`.
    mutating func refuseWaiters(_ failure: Failure) -> Step {
        var actions: [Action] = []
        while let waiter = waiters.popFirst() {
            actions.append(.refuseCall(token: waiter.token, .error(failure)))
        }
        return .act(actions)
    }
}

extension ClientSession.Step {
    var actions: [ClientSession.Action] {
        switch self {
        case .act(let actions): actions
        case .violation: []
        }
    }
}
