/// The receiving side of one stream's flow control (PROTOCOL.md 7.2): the sender may have at
/// most `windowBytes` chunk bytes that this side has not yet given back in a WindowUpdate.
/// Given back in batches of a quarter window, as the consumer takes bytes out.
public struct ReceiveWindow: Equatable, Sendable {
    public let windowBytes: Int
    /// Received and not yet announced back: what the sender believes is buffered here.
    public private(set) var unannouncedBytes = 0
    /// Taken by the consumer and not yet announced.
    public private(set) var consumedBytes = 0

    public init(windowBytes: Int) {
        self.windowBytes = windowBytes
    }

    /// A WindowUpdate is sent once this many bytes were consumed ("SHOULD batch updates").
    public var batchBytes: Int { max(1, windowBytes / 4) }

    /// Counts a received chunk in. False when it exceeds the sender's credit: a violation.
    public mutating func receive(_ bytes: Int) -> Bool {
        guard unannouncedBytes + bytes <= windowBytes else { return false }
        unannouncedBytes += bytes
        return true
    }

    /// The consumer took `bytes` out. Returns the increment to announce now, if a batch is full.
    public mutating func consume(_ bytes: Int) -> UInt32? {
        consumedBytes = min(consumedBytes + bytes, unannouncedBytes)
        guard consumedBytes >= batchBytes else { return nil }
        let increment = consumedBytes
        unannouncedBytes -= increment
        consumedBytes = 0
        return UInt32(increment)
    }
}

/// The sending side of one stream's flow control (PROTOCOL.md 7.2): what the receiver still
/// accepts. Never more than its window.
public struct SendCredit: Equatable, Sendable {
    public let windowBytes: Int
    public private(set) var creditBytes: Int

    /// A new stream starts with credit equal to the receiver's window.
    public init(windowBytes: Int) {
        self.windowBytes = windowBytes
        creditBytes = windowBytes
    }

    /// Adds a WindowUpdate. False for an increment of 0 or one raising the credit above the
    /// window: the receiver broke the protocol.
    public mutating func add(_ incrementBytes: UInt32) -> Bool {
        guard incrementBytes > 0, creditBytes + Int(incrementBytes) <= windowBytes else { return false }
        creditBytes += Int(incrementBytes)
        return true
    }

    /// Spends credit on a chunk. The sending task only ever holds credit this side granted, so
    /// a chunk beyond it is a bug here, not the peer's.
    public mutating func spend(_ bytes: Int) {
        precondition(bytes >= 1 && bytes <= creditBytes, "a chunk of \(bytes) bytes with \(creditBytes) bytes of credit")
        creditBytes -= bytes
    }
}
