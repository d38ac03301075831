import NIOCore

/// The server's side of one connection's session rules (PROTOCOL.md sections 3.3 and 5 to 11):
/// Hello, the phase of the connection, request ids, per-request state, flow-control credit,
/// cancellation, deadlines, progress pacing and GoAway.
///
/// A plain value: each input (a frame received, something the request handler did, a channel
/// event, a timer) is one mutating method returning the actions to carry out, in order. It
/// never touches the channel, a clock or a task, so every rule is tested by feeding inputs
/// and reading actions. `ServerConnectionHandler` only carries the actions out. An input the
/// rules make impossible (a connection event out of order) is a `preconditionFailure`.
public struct ServerSession {
    /// What the connection must do, in the order given.
    public enum Action: Equatable {
        /// Write a control or fixed-layout frame.
        case send(FrameMessage, requestID: UInt32)
        /// Write a Chunk frame of a download.
        case sendChunk(ByteBuffer, requestID: UInt32)
        /// Close the connection once every frame written so far has gone out (bounded).
        case close
        case startHelloTimer(Duration)
        case cancelHelloTimer
        /// Run the request handler for this request, in a task of its own, with an upload
        /// stream when the envelope has one.
        case startHandler(RequestEnvelope, requestID: UInt32)
        /// Call `requestTimerFired` after this long (the request's `timeoutMs`).
        case startRequestTimer(milliseconds: Int64, requestID: UInt32)
        /// Hand an upload chunk to the handler's stream.
        case deliverUploadChunk(ByteBuffer, requestID: UInt32)
        /// The upload's ChunkEnd: the handler's stream verifies it and ends.
        case endUpload(ChunkEndPayload, requestID: UInt32)
        /// The request was answered before its upload ended: the handler's stream stops (late
        /// chunks are discarded here).
        case stopUpload(requestID: UInt32)
        /// The handler may send its download, with this much credit to start.
        case startDownload(creditBytes: Int, requestID: UInt32)
        /// The client returned download credit.
        case grantDownloadCredit(bytes: Int, requestID: UInt32)
        /// The request is over: disarm its timer, end its streams, and stop its handler unless
        /// it finished by itself.
        case endRequest(RequestEnd, requestID: UInt32)
        /// The client broke the protocol (for the log).
        case reportViolation(String)
        /// Progress events of a request that exceeded its pace and were not sent (for the log and
        /// the bound's counter).
        case reportDroppedProgress(events: Int, requestID: UInt32)
        /// A request was answered `busy`: `running` requests already ran on the connection, its
        /// `concurrentRequestsPerConnectionMax` (for the log and the bound's counter).
        case reportTooManyRequests(running: Int)
    }

    /// How a request ended, which says what becomes of its handler.
    public enum RequestEnd: Equatable, Sendable {
        /// The handler answered (or its download ended): nothing to stop.
        case finished
        /// Cancel, deadline or shutdown: the handler's task is cancelled.
        case stopped
        /// The connection is gone: the handler's task is cancelled and its upload fails as
        /// "connection closed".
        case connectionLost
    }

    enum State {
        /// Waiting for TLS (or for channelActive).
        case securing
        /// Over the connection limit or shutting down: answer this on request id 0, then close.
        case refusing(ErrorResponse)
        case awaitingHello
        case established(Connection)
        /// GoAway sent: requests above `lastRequestID` are refused; closes when none is open.
        case goingAway(Connection, lastRequestID: UInt32)
        case closed
        /// Only while a method mutates a connection in place (so it is not copied).
        case modifying
    }

    /// An established connection's requests.
    struct Connection {
        var requests: [UInt32: Request] = [:]
        var highestRequestID: UInt32 = 0
        /// The client's receive window per download stream, from Hello.
        let downloadWindowBytes: Int
    }

    /// A request between its Request frame and its terminal frame.
    struct Request {
        enum Upload {
            /// The request has no upload: a chunk for it is a violation.
            case none
            case receiving(ReceiveWindow)
            /// ChunkEnd arrived; the handler has not answered yet.
            case ended
            /// The request was answered before its upload ended: late chunks are discarded.
            case discarding
        }

        enum Answer {
            /// The handler runs.
            case pending
            /// A Response with a download was sent; chunks go out within this credit.
            case downloading(SendCredit)
        }

        let method: Method
        let timeoutMs: Int64?
        var upload: Upload
        var answer = Answer.pending
        var progress: ProgressBudget
    }

    /// Inner result of handling one input on an established connection.
    enum Step {
        case act([Action])
        case violation(String)
    }

    public let configuration: ServerConfiguration
    /// What HelloReply reports about the agent.
    public let agent: AgentInfo
    private var state: State

    /// A session that will serve requests.
    public init(configuration: ServerConfiguration, agent: AgentInfo) {
        self.configuration = configuration
        self.agent = agent
        state = .securing
    }

    /// A session that only refuses (connection limit, shutdown): Error `refusal` on request id 0
    /// as its first frame, without waiting for Hello, then close (PROTOCOL.md 5.2).
    public init(configuration: ServerConfiguration, agent: AgentInfo, refusing refusal: ErrorResponse) {
        self.configuration = configuration
        self.agent = agent
        state = .refusing(refusal)
    }

    // MARK: Connection events

    /// TLS finished (or, in plaintext, the connection is up): Hello may come now.
    public mutating func channelSecured() -> [Action] {
        switch state {
        case .securing:
            state = .awaitingHello
            return [.startHelloTimer(configuration.helloTimeout)]
        case .refusing(let refusal):
            state = .closed
            return [.send(.error(refusal), requestID: 0), .close]
        case .closed:
            return []
        case .awaitingHello, .established, .goingAway:
            preconditionFailure("the connection was secured twice")
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// TLS finished but the server will not serve the peer (its limit of authenticated
    /// connections is reached, or it began shutting down): Error `refusal` on request id 0,
    /// then close (PROTOCOL.md 5.2).
    public mutating func channelSecured(refusing refusal: ErrorResponse) -> [Action] {
        if case .securing = state { state = .refusing(refusal) }
        return channelSecured()
    }

    public mutating func helloTimerFired() -> [Action] {
        guard case .awaitingHello = state else { return [] }
        return violation("no Hello within \(configuration.helloTimeout)")
    }

    /// The frame layer refused the bytes (PROTOCOL.md 9.1).
    public mutating func frameError(_ error: FrameError) -> [Action] {
        if case .truncatedFrame = error { return [] }  // the connection is ending anyway
        return violation(error.description)
    }

    /// The connection has been idle for the idle timeout (no frame read).
    public mutating func idleTimerFired() -> [Action] {
        guard case .established(let connection) = state, connection.requests.isEmpty else { return [] }
        return goAway(reason: "idle")
    }

    /// The connection closed, for whatever reason: every request still open is stopped.
    public mutating func channelInactive() -> [Action] {
        switch state {
        case .securing, .refusing, .closed:
            state = .closed
            return []
        case .awaitingHello:
            state = .closed
            return [.cancelHelloTimer]
        case .established(let connection), .goingAway(let connection, _):
            state = .closed
            return Self.loseRequests(connection)
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// GoAway (graceful shutdown, idle): no new requests; the connection closes when the open
    /// ones have finished (PROTOCOL.md 11). Before Hello there is nothing to wait for: close.
    public mutating func goAway(reason: String) -> [Action] {
        switch state {
        case .securing, .refusing:
            state = .closed
            return [.close]
        case .awaitingHello:
            state = .closed
            return [.cancelHelloTimer, .close]
        case .established(let connection):
            let last = connection.highestRequestID
            return keep(connection, lastRequestID: last, [.send(.goAway(GoAway(lastRequestID: last, reason: reason)), requestID: 0)])
        case .goingAway, .closed:
            return []
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// Ends the connection now (the shutdown grace period is over): running requests are
    /// stopped and answered `cancelled`.
    public mutating func forceClose(reason: String) -> [Action] {
        switch state {
        case .established(let connection), .goingAway(let connection, _):
            state = .closed
            let error = ErrorResponse(.cancelled, "\(reason) before the request finished; it may be partly done, so retry with the same operation id")
            return connection.requests.keys.sorted().flatMap { id -> [Action] in
                Self.endActions(connection.requests[id], .stopped, id, error: error)
            } + [.close]
        case .securing, .refusing, .awaitingHello:
            return goAway(reason: reason)
        case .closed:
            return []
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    // MARK: Frames

    public mutating func frameReceived(_ frame: Frame) -> [Action] {
        switch state {
        case .closed, .refusing:
            return []
        case .securing:
            return violation("a frame arrived before the connection was secured")
        case .awaitingHello:
            guard frame.type == .hello else { return violation("the first frame must be Hello, not \(frame.type)") }
            return hello(frame)
        case .established(var connection):
            state = .modifying
            let step = connection.receive(frame, configuration: configuration, lastRequestID: nil)
            return settle(connection, lastRequestID: nil, step)
        case .goingAway(var connection, let last):
            state = .modifying
            let step = connection.receive(frame, configuration: configuration, lastRequestID: last)
            return settle(connection, lastRequestID: last, step)
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    private mutating func hello(_ frame: Frame) -> [Action] {
        let hello: Hello
        do {
            guard case .hello(let decoded) = try frame.message() else { preconditionFailure("a Hello frame decodes to Hello") }
            try decoded.validate()
            hello = decoded
        } catch {
            return violation("\(error)")
        }
        let offered = hello.protocolVersionMin...hello.protocolVersionMax
        guard let version = ProtocolVersion.negotiate(offered: offered) else {
            let supported = ProtocolVersion.supported
            state = .closed
            let refusal = ErrorResponse(.unsupportedVersion,
                "no protocol version in common: client speaks \(offered.lowerBound)...\(offered.upperBound), this agent \(supported.lowerBound)...\(supported.upperBound); upgrade the older side")
            return [.cancelHelloTimer, .send(.error(refusal), requestID: 0), .close]
        }
        state = .established(Connection(downloadWindowBytes: hello.streamWindowBytes))
        let reply = HelloReply(protocolVersion: version, agent: agent, streamWindowBytes: configuration.streamWindowBytes,
                               concurrentRequestsMax: configuration.concurrentRequestsPerConnectionMax)
        return [.cancelHelloTimer, .send(.helloReply(reply), requestID: 0)]
    }

    // MARK: What the request handler did

    /// The handler returned its result; `download` when chunks follow it.
    public mutating func handlerAnswered(_ result: ResponsePayload, download: Bool, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { connection, request in
            guard case .pending = request.answer else { return .act([]) }
            guard result.method == request.method else {
                return .act(connection.end(id, .finished, error: ErrorResponse(.internal,
                    "the agent answered \(result.method) to a \(request.method) request (agent bug)")))
            }
            var actions: [Action] = [.send(.response(ResponseEnvelope(result, download: download)), requestID: id)]
            actions += Self.stopReadingUpload(&request, id)
            guard download else { return .act(Self.reportsFirst(actions + connection.end(id, .finished))) }
            request.answer = .downloading(SendCredit(windowBytes: connection.downloadWindowBytes))
            return .act(actions + [.startDownload(creditBytes: connection.downloadWindowBytes, requestID: id)])
        }
    }

    /// The handler threw; `error` is its answer on the wire.
    public mutating func handlerFailed(_ error: ErrorResponse, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { connection, request in
            guard case .pending = request.answer else { return .act([]) }
            return .act(connection.end(id, .finished, error: error))
        }
    }

    /// The handler reports progress. Sent while the request runs and its pace allows.
    public mutating func progressReported(_ event: ProgressEvent, requestID id: UInt32, now: NIODeadline) -> [Action] {
        modifyRequest(id) { _, request in
            guard case .pending = request.answer, request.progress.admit(now: now) else { return .act([]) }
            return .act([.send(.progress(event), requestID: id)])
        }
    }

    /// The handler's code took `bytes` of upload out of its stream.
    public mutating func uploadConsumed(bytes: Int, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { _, request in
            guard case .receiving(var window) = request.upload else { return .act([]) }
            let increment = window.consume(bytes)
            request.upload = .receiving(window)
            return .act(increment.map { [.send(.windowUpdate(incrementBytes: $0), requestID: id)] } ?? [])
        }
    }

    /// The handler's download produced a chunk (within credit it was granted).
    public mutating func downloadChunkReady(_ bytes: ByteBuffer, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { _, request in
            guard case .downloading(var credit) = request.answer else { return .act([]) }
            credit.spend(bytes.readableBytes)
            request.answer = .downloading(credit)
            return .act([.sendChunk(bytes, requestID: id)])
        }
    }

    public mutating func downloadEnded(_ end: ChunkEndPayload, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { connection, request in
            guard case .downloading = request.answer else { return .act([]) }
            return .act(Self.reportsFirst([.send(.chunkEnd(end), requestID: id)] + connection.end(id, .finished)))
        }
    }

    /// The download's source failed: the request ends with `error` instead of ChunkEnd.
    public mutating func downloadFailed(_ error: ErrorResponse, requestID id: UInt32) -> [Action] {
        modifyRequest(id) { connection, _ in .act(connection.end(id, .finished, error: error)) }
    }

    /// The request's `timeoutMs` passed (PROTOCOL.md 8.1).
    public mutating func requestTimerFired(requestID id: UInt32) -> [Action] {
        modifyRequest(id) { connection, request in
            let timeout = request.timeoutMs.map { "\($0)" } ?? "?"
            return .act(connection.end(id, .stopped, error: ErrorResponse(.timeout, "the request did not finish within its timeoutMs \(timeout)")))
        }
    }

    // MARK: Helpers

    /// Runs `body` on open request `id` of an established (or going-away) connection; nothing
    /// for a request that has ended. The request is written back unless `body` ended it.
    private mutating func modifyRequest(_ id: UInt32, _ body: (inout Connection, inout Request) -> Step) -> [Action] {
        let lastRequestID: UInt32?
        var connection: Connection
        switch state {
        case .established(let open):
            connection = open
            lastRequestID = nil
        case .goingAway(let open, let last):
            connection = open
            lastRequestID = last
        case .closed, .securing, .refusing, .awaitingHello:
            return []
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
        guard var request = connection.requests[id] else { return [] }
        state = .modifying
        let step = body(&connection, &request)
        if connection.requests[id] != nil { connection.requests[id] = request }
        return settle(connection, lastRequestID: lastRequestID, step)
    }

    /// Puts `connection` back after `step`: closed on a violation, and closing once GoAway was
    /// sent and no request is left.
    private mutating func settle(_ connection: Connection, lastRequestID: UInt32?, _ step: Step) -> [Action] {
        switch step {
        case .violation(let detail):
            state = .closed
            return Self.violationActions(detail, lost: Self.loseRequests(connection))
        case .act(let actions):
            return keep(connection, lastRequestID: lastRequestID, actions)
        }
    }

    private mutating func keep(_ connection: Connection, lastRequestID: UInt32?, _ actions: [Action]) -> [Action] {
        guard let lastRequestID else {
            state = .established(connection)
            return actions
        }
        if connection.requests.isEmpty {
            state = .closed
            return actions + [.close]
        }
        state = .goingAway(connection, lastRequestID: lastRequestID)
        return actions
    }

    /// The client broke the protocol: say why on request id 0, then close.
    private mutating func violation(_ detail: String) -> [Action] {
        switch state {
        case .closed, .refusing:
            return []
        case .securing:
            state = .closed
            return Self.violationActions(detail, lost: [])
        case .awaitingHello:
            state = .closed
            return Self.violationActions(detail, lost: [.cancelHelloTimer])
        case .established(let connection), .goingAway(let connection, _):
            state = .closed
            return Self.violationActions(detail, lost: Self.loseRequests(connection))
        case .modifying:
            preconditionFailure("re-entered while modifying")
        }
    }

    /// The dropped-progress count is recorded before the request's last frame goes out, so
    /// whoever has the answer also sees the count.
    static func reportsFirst(_ actions: [Action]) -> [Action] {
        let reports = actions.filter { if case .reportDroppedProgress = $0 { true } else { false } }
        return reports + actions.filter { if case .reportDroppedProgress = $0 { false } else { true } }
    }

    private static func violationActions(_ detail: String, lost: [Action]) -> [Action] {
        [.reportViolation(detail)] + lost + [.send(.error(ErrorResponse(.protocolViolation, detail)), requestID: 0), .close]
    }

    private static func loseRequests(_ connection: Connection) -> [Action] {
        connection.requests.keys.sorted().flatMap { endActions(connection.requests[$0], .connectionLost, $0, error: nil) }
    }

    static func endActions(_ request: Request?, _ end: RequestEnd, _ id: UInt32, error: ErrorResponse?) -> [Action] {
        var actions: [Action] = [.endRequest(end, requestID: id)]
        if let dropped = request?.progress.droppedEvents, dropped > 0 {
            actions.append(.reportDroppedProgress(events: dropped, requestID: id))
        }
        if let error { actions.append(.send(.error(error), requestID: id)) }
        return actions
    }

    /// Late chunks of an answered request are dropped, not buffered.
    static func stopReadingUpload(_ request: inout Request, _ id: UInt32) -> [Action] {
        switch request.upload {
        case .receiving:
            request.upload = .discarding
            return [.stopUpload(requestID: id)]
        case .ended:
            request.upload = .discarding
            return []
        case .none, .discarding:
            return []
        }
    }
}

extension ServerSession.Connection {
    typealias Action = ServerSession.Action
    typealias Step = ServerSession.Step

    /// A frame on an established connection (PROTOCOL.md 3 and 6 to 11).
    mutating func receive(_ frame: Frame, configuration: ServerConfiguration, lastRequestID: UInt32?) -> Step {
        let id = frame.requestID
        switch frame.type {
        case .request:
            return request(frame, configuration: configuration, lastRequestID: lastRequestID)
        case .chunk:
            return withOpenRequest(id, frame.type) { request in
                switch request.upload {
                case .none:
                    return .violation("Chunk for request \(id), which has no upload")
                case .discarding:
                    return .act([])
                case .ended:
                    return .violation("Chunk for request \(id) after its ChunkEnd")
                case .receiving(var window):
                    guard window.receive(frame.payload.readableBytes) else {
                        return .violation("request \(id)'s upload exceeds its window of \(window.windowBytes) bytes")
                    }
                    request.upload = .receiving(window)
                    return .act([.deliverUploadChunk(frame.payload, requestID: id)])
                }
            }
        case .chunkEnd:
            return withOpenRequest(id, frame.type) { request in
                switch (request.upload, try? frame.message()) {
                case (.receiving, .chunkEnd(let end)?):
                    request.upload = .ended
                    return .act([.endUpload(end, requestID: id)])
                case (.ended, _):
                    return .violation("second ChunkEnd for request \(id)")
                case (.discarding, _):
                    return .act([])
                default:
                    return .violation("ChunkEnd for request \(id), which has no open upload")
                }
            }
        case .cancel:
            guard requests[id] != nil else { return stale(id, frame.type) }
            return .act(end(id, .stopped, error: ErrorResponse(.cancelled, "cancelled by the client")))
        case .windowUpdate:
            return withOpenRequest(id, frame.type) { request in
                guard case .downloading(var credit) = request.answer, case .windowUpdate(let increment)? = try? frame.message() else {
                    return .violation("WindowUpdate for request \(id), which has no download running")
                }
                guard increment > 0 else { return .violation("WindowUpdate of 0 bytes for request \(id)") }
                guard credit.add(increment) else {
                    return .violation("WindowUpdate of \(increment) bytes raises request \(id)'s credit above the window of \(credit.windowBytes) bytes")
                }
                request.answer = .downloading(credit)
                return .act([.grantDownloadCredit(bytes: Int(increment), requestID: id)])
            }
        case .ping:
            guard case .ping(let opaque)? = try? frame.message() else { preconditionFailure("a Ping's length was checked") }
            return .act([.send(.pong(opaque), requestID: 0)])
        case .pong:
            return .act([])
        case .hello:
            return .violation("second Hello")
        case .helloReply, .response, .error, .progress, .goAway:
            return .violation("\(frame.type) frames go from server to client")
        }
    }

    /// Runs `body` on the open request `id`; a stale id is discarded, one never opened is a
    /// violation (PROTOCOL.md 3.3).
    private mutating func withOpenRequest(_ id: UInt32, _ type: FrameType, _ body: (inout ServerSession.Request) -> Step) -> Step {
        guard var request = requests[id] else { return stale(id, type) }
        let step = body(&request)
        requests[id] = request
        return step
    }

    private func stale(_ id: UInt32, _ type: FrameType) -> Step {
        id > highestRequestID ? .violation("\(type) for request \(id), which was never sent") : .act([])
    }

    private mutating func request(_ frame: Frame, configuration: ServerConfiguration, lastRequestID: UInt32?) -> Step {
        let id = frame.requestID
        guard id > highestRequestID else {
            return .violation("request id \(id) is not above the previous one (\(highestRequestID))")
        }
        highestRequestID = id
        if let last = lastRequestID, id > last {
            return .act([.send(.error(ErrorResponse(.shuttingDown,
                "the agent is shutting down (GoAway after request \(last)); send it again on a new connection")), requestID: id)])
        }
        guard requests.count < configuration.concurrentRequestsPerConnectionMax else {
            return .act([.reportTooManyRequests(running: requests.count), .send(.error(ErrorResponse(.busy,
                "\(requests.count) requests already running on this connection, the maximum; retry when one finishes")), requestID: id)])
        }
        let envelope: RequestEnvelope
        do {
            guard case .request(let decoded) = try frame.message() else { preconditionFailure("a Request frame decodes to a request") }
            try decoded.validate()
            envelope = decoded
        } catch .unknownMethod(let name) {
            return .act([.send(.error(ErrorResponse(.notImplemented, MessageError.unknownMethod(name).description)), requestID: id)])
        } catch {
            return .act([.send(.error(ErrorResponse(.badRequest, error.description)), requestID: id)])
        }
        requests[id] = ServerSession.Request(
            method: envelope.payload.method, timeoutMs: envelope.timeoutMs,
            upload: envelope.upload ? .receiving(ReceiveWindow(windowBytes: configuration.streamWindowBytes)) : .none,
            progress: ProgressBudget(burst: configuration.progressEventsBurst, perSecond: configuration.progressEventsPerSecond))
        var actions: [Action] = [.startHandler(envelope, requestID: id)]
        if let timeoutMs = envelope.timeoutMs { actions.append(.startRequestTimer(milliseconds: timeoutMs, requestID: id)) }
        return .act(actions)
    }

    /// The request's end: its terminal `error` if given (the Response or ChunkEnd was sent
    /// otherwise). Frees its slot.
    mutating func end(_ id: UInt32, _ how: ServerSession.RequestEnd, error: ErrorResponse? = nil) -> [Action] {
        let request = requests.removeValue(forKey: id)
        return ServerSession.endActions(request, how, id, error: error)
    }
}
