/// An array kept in chunks of `chunkLength` elements, for the engine's moves and waves: a copy
/// of it (the engine before `handle`, which the runtime keeps to record what changed) shares
/// every chunk, so writing one element afterwards copies that element's chunk, not the whole
/// array, and `differingPositions(from:)` compares only the chunks the two no longer share.
/// Without it, one transition of a 5,000-node rollout copied and compared every move.
///
/// Coded as the plain array it holds (the engine's snapshots read and write what they did);
/// elements are only appended, never removed, so the same elements always fill the same chunks.
struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var chunkLength: Int { 64 }

    private var chunks: [[Element]] = []
    private var length = 0

    init() {}

    init(_ elements: some Sequence<Element>) {
        for element in elements { append(element) }
    }

    var startIndex: Int { 0 }
    var endIndex: Int { length }

    subscript(position: Int) -> Element {
        // Yielded, not returned: reading one field of a move (the engine's loops read its phase
        // or wave) then copies nothing else of it.
        _read {
            precondition(position >= 0 && position < length, "index \(position) out of 0..<\(length)")
            yield chunks[position / Self.chunkLength][position % Self.chunkLength]
        }
        _modify {
            precondition(position >= 0 && position < length, "index \(position) out of 0..<\(length)")
            yield &chunks[position / Self.chunkLength][position % Self.chunkLength]
        }
        set {
            precondition(position >= 0 && position < length, "index \(position) out of 0..<\(length)")
            chunks[position / Self.chunkLength][position % Self.chunkLength] = newValue
        }
    }

    mutating func append(_ element: Element) {
        if length % Self.chunkLength == 0 {
            var chunk: [Element] = []
            chunk.reserveCapacity(Self.chunkLength)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(element)
        length += 1
    }
}

extension ChunkedArray: Equatable where Element: Equatable {
    /// Chunk by chunk; a chunk the two share compares at once (`Array`'s own shortcut).
    static func == (lhs: Self, rhs: Self) -> Bool { lhs.length == rhs.length && lhs.chunks == rhs.chunks }

    /// The positions whose element differs from `other`'s, ascending, with every position past
    /// `other`'s end. Chunks both still share are skipped without looking at their elements, so
    /// after a copy and a few writes this costs those writes' chunks, not the array's length.
    func differingPositions(from other: Self) -> [Int] {
        var positions: [Int] = []
        for (number, chunk) in chunks.enumerated() {
            let base = number * Self.chunkLength
            guard number < other.chunks.count else {
                positions += base..<(base + chunk.count)
                continue
            }
            let then = other.chunks[number]
            let shared = chunk.withUnsafeBufferPointer { now in then.withUnsafeBufferPointer { $0.baseAddress == now.baseAddress } }
            if shared && chunk.count == then.count { continue }
            for offset in chunk.indices where !(offset < then.count && chunk[offset] == then[offset]) {
                positions.append(base + offset)
            }
        }
        return positions
    }
}

extension ChunkedArray: Sendable where Element: Sendable {}

extension ChunkedArray: Codable where Element: Codable {
    init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode([Element].self))
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Array(self))
    }
}
