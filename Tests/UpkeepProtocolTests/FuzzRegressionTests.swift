import Foundation
import NIOCore
import NIOEmbedded
import Testing
import UpkeepCore
import UpkeepProtocol

/// Replays fuzz/regressions/ and checks that the channel decoder and the pure core (what the
/// fuzzer runs) agree on seeded mutations of every golden vector.
@Suite struct FuzzRegressionTests {
    static let root = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../..").standardized

    static func regressionFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.appending(path: "fuzz/regressions").path)
            .filter { $0 != "README.md" }.sorted()
    }

    @Test func regressionInputsDecodeWithoutCrashing() throws {
        let files = try Self.regressionFiles()
        // A replay of nothing proves nothing: a renamed directory or a lost file must fail here.
        #expect(!files.isEmpty, "fuzz/regressions/ holds no input to replay")
        for file in files {
            let bytes = try Data(contentsOf: Self.root.appending(path: "fuzz/regressions/\(file)"))
            _ = bytes.withUnsafeBytes { FrameStreamCheck.run($0) }
            _ = Self.channelOutcome(Array(bytes))
        }
    }

    /// What the channel decoder makes of `bytes`: frames decoded, then the error (if any).
    static func channelOutcome(_ bytes: [UInt8]) -> (frames: Int, error: FrameError?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var frames = 0
        var failure: FrameError?
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            failure = error as? FrameError
        }
        while (try? channel.readInbound(as: Frame.self)) ?? nil != nil { frames += 1 }
        do {
            _ = try channel.finish()
        } catch {
            failure = failure ?? (error as? FrameError)
        }
        return (frames, failure)
    }

    @Test func channelDecoderAgreesWithTheFuzzedCoreOnMutatedVectors() throws {
        let directory = Self.root.appending(path: "protocol/vectors")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".bin") }.sorted()
            .map { Array(try Data(contentsOf: directory.appending(path: $0))) }
        var random = SeededGenerator(seed: 0x5EED)
        var compared = 0
        for round in 0..<2_000 {
            var input = seeds[round % seeds.count] + seeds[(round * 7 + 3) % seeds.count]
            for _ in 0..<(1 + Int(random.next() % 4)) where !input.isEmpty {
                let at = Int(random.next() % UInt64(input.count))
                switch random.next() % 3 {
                case 0: input[at] = UInt8(truncatingIfNeeded: random.next())
                case 1: input.remove(at: at)
                default: input.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
                }
            }
            let core = input.withUnsafeBytes { FrameStreamCheck.run($0) }
            let channel = Self.channelOutcome(input)
            switch core {
            case .complete(let frames), .messageError(_, let frames):
                // Message errors are not the decoder's business: it passes every framed payload on.
                if case .complete = core { #expect(channel.error == nil && channel.frames == frames, "round \(round)") }
                #expect(channel.frames >= frames, "round \(round)")
            case .truncated(let frames, let leftover):
                #expect(channel.frames == frames && channel.error == .truncatedFrame(leftoverBytes: leftover), "round \(round)")
            case .frameError(let error, let frames):
                #expect(channel.frames == frames && channel.error == error, "round \(round)")
            }
            compared += 1
        }
        #expect(compared == 2_000)
    }
}

