/// Decides, for one server connection, which time bound applies next and what reaching it
/// means. Pure: `HTTPServerHandler` feeds it what happened with a monotonic time in
/// nanoseconds and carries out what it returns; it reads no clock and touches no socket.
///
/// A new connection reads its first head at once: the header read time counts from accept, as
/// Go's `http.Server.ReadHeaderTimeout` does for a connection's first request
/// (https://pkg.go.dev/net/http#Server), so a peer that connects and says nothing is closed as
/// soon as one that trickles. A connection then reads the head (bounded by the header read time
/// and by the request time), reads the body (request time), waits for the responder (request
/// time), and is idle after a keep-alive answer until a byte of the next request arrives. Every
/// time counts from the phase's start, so a peer sending one byte at a time gains nothing.
struct ConnectionDeadlines: Sendable {
    struct Bounds: Sendable, Equatable {
        var headerReadNanoseconds: Int64
        var requestNanoseconds: Int64
        var idleNanoseconds: Int64
    }

    enum Phase: Sendable, Equatable {
        /// Waiting for the first byte of the next request, since the last answer.
        case idle(since: Int64)
        /// A new connection (since accept), or bytes of a request arrived; its head is not complete.
        case readingHead(started: Int64)
        /// The head is complete, the body is arriving.
        case readingBody(started: Int64)
        /// The request is complete; the responder has it.
        case responding(started: Int64)
        /// The answer's head is written and its body streams (a watch): no time bound here, the
        /// producer ends it (a watch's `timeoutSeconds`).
        case streaming
        /// The connection ends: nothing more is decided.
        case closed
    }

    enum Event: Sendable, Equatable {
        /// Bytes arrived from the peer (before HTTP decoding).
        case bytesArrived
        /// A request's head was decoded.
        case headArrived
        /// A request's end was decoded.
        case requestArrived
        /// A streamed answer's head went to the socket; its body follows as produced.
        case streamStarted
        /// An answer went to the socket; with `keepAlive` the connection waits for the next request.
        case answerWritten(keepAlive: Bool)
        /// The connection closed, or is closing.
        case closing
    }

    /// The next bound, when it is reached, and what to do then.
    struct Deadline: Sendable, Equatable {
        var at: Int64
        var limit: ServerLimit
        /// The status to answer with before closing; nil: close without a word (no request is
        /// underway, or its head is incomplete and there is nothing to answer yet).
        var answer: Int?
    }

    let bounds: Bounds
    private(set) var phase: Phase

    init(bounds: Bounds, now: Int64) {
        self.bounds = bounds
        phase = .readingHead(started: now)
    }

    mutating func handle(_ event: Event, now: Int64) {
        switch (phase, event) {
        case (.closed, _):
            break
        case (_, .closing):
            phase = .closed
        case (.idle, .bytesArrived):
            phase = .readingHead(started: now)
        case (.idle, .headArrived):
            // A pipelined request whose bytes arrived while the last one was being answered.
            phase = .readingBody(started: now)
        case (.readingHead(let started), .headArrived):
            phase = .readingBody(started: started)
        case (.readingBody(let started), .requestArrived):
            phase = .responding(started: started)
        case (_, .answerWritten(let keepAlive)):
            phase = keepAlive ? .idle(since: now) : .closed
        case (.responding, .streamStarted):
            phase = .streaming
        case (.readingHead, .bytesArrived), (.readingBody, .bytesArrived), (.responding, .bytesArrived), (.streaming, .bytesArrived):
            break
        case (.idle, .requestArrived), (.readingHead, .requestArrived), (.readingBody, .headArrived), (.responding, .headArrived),
             (.responding, .requestArrived), (.streaming, .headArrived), (.streaming, .requestArrived), (.idle, .streamStarted),
             (.readingHead, .streamStarted), (.readingBody, .streamStarted), (.streaming, .streamStarted):
            preconditionFailure("HTTP decoder delivered \(event) while \(phase)")
        }
    }

    var deadline: Deadline? {
        switch phase {
        case .idle(let since):
            return Deadline(at: since + bounds.idleNanoseconds, limit: .idleTimeout, answer: nil)
        case .readingHead(let started):
            return bounds.headerReadNanoseconds <= bounds.requestNanoseconds
                ? Deadline(at: started + bounds.headerReadNanoseconds, limit: .headerReadTimeout, answer: nil)
                : Deadline(at: started + bounds.requestNanoseconds, limit: .requestTimeout, answer: nil)
        case .readingBody(let started):
            return Deadline(at: started + bounds.requestNanoseconds, limit: .requestTimeout, answer: 408)
        case .responding(let started):
            return Deadline(at: started + bounds.requestNanoseconds, limit: .requestTimeout, answer: 503)
        case .streaming, .closed:
            return nil
        }
    }

    /// The deadline, if `now` has reached it; the connection is then closed.
    mutating func reached(now: Int64) -> Deadline? {
        guard let deadline, now >= deadline.at else { return nil }
        phase = .closed
        return deadline
    }
}
