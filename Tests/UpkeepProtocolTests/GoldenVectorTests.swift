import Foundation
import NIOCore
import NIOEmbedded
import Testing
import UpkeepProtocol

/// The files in protocol/vectors/ (written by generate.py, an independent implementation of
/// PROTOCOL.md) decode, and re-encode byte for byte. Nothing is regenerated here: a drift in
/// either implementation fails.
@Suite struct GoldenVectorTests {
    struct Manifest: Decodable {
        struct Valid: Decodable { var file: String; var type: String; var requestID: UInt32; var description: String }
        struct Invalid: Decodable { var file: String; var error: String; var description: String }
        var valid: [Valid]
        var invalid: [Invalid]
    }

    static let directory = URL(filePath: #filePath).deletingLastPathComponent()
        .appending(path: "../../protocol/vectors").standardized

    static func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: directory.appending(path: "manifest.json")))
    }

    static func load(_ file: String) throws -> ByteBuffer {
        ByteBuffer(bytes: try Data(contentsOf: directory.appending(path: file)))
    }

    /// Feeds `bytes` through the real decoder and closes, returning frames or the first error.
    static func decode(_ bytes: ByteBuffer) -> Result<[Frame], any Error> {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        return Result {
            var frames: [Frame] = []
            do {
                try channel.writeInbound(bytes)
                while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
            } catch {
                _ = try? channel.finish()
                throw error
            }
            _ = try channel.finish()
            return frames
        }
    }

    @Test func manifestListsEveryVectorFile() throws {
        let manifest = try Self.manifest()
        let listed = Set(manifest.valid.map(\.file) + manifest.invalid.map(\.file))
        let present = Set(try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
            .filter { $0.hasSuffix(".bin") })
        #expect(listed == present)
        #expect(manifest.valid.count >= 30)
        // One request and one response vector per method.
        for method in Method.allCases {
            #expect(listed.contains("request-\(method.rawValue).bin"))
            #expect(listed.contains("response-\(method.rawValue).bin"))
        }
    }

    @Test(arguments: try GoldenVectorTests.manifest().valid.map(\.file))
    func validVectorDecodesAndReencodesByteForByte(file: String) throws {
        let entry = try #require(try Self.manifest().valid.first { $0.file == file })
        let original = try Self.load(file)
        let frames = try Self.decode(original).get()
        try #require(frames.count == 1)
        let frame = frames[0]
        #expect(frame.type.description == entry.type)
        #expect(frame.requestID == entry.requestID)

        let message = try frame.message()
        let rebuilt = message == .chunk ? frame : try Frame(message, requestID: frame.requestID)
        #expect(try FrameEncoder.encode(rebuilt) == original, "\(file) re-encodes differently")
        #expect(Array(original.readableBytesView).withUnsafeBytes { FrameStreamCheck.run($0) } == .complete(frames: 1))
    }

    @Test(arguments: try GoldenVectorTests.manifest().invalid.map(\.file))
    func invalidVectorIsRefusedWithTheDocumentedError(file: String) throws {
        let entry = try #require(try Self.manifest().invalid.first { $0.file == file })
        let refusal: String
        switch Self.decode(try Self.load(file)) {
        case .success(let frames):
            try #require(frames.count == 1, "\(file) should hold one frame")
            do {
                // The server session validates a request as it decodes it (rules JSON types cannot express).
                if case .request(let envelope) = try frames[0].message() { try envelope.validate() }
                refusal = "accepted"
            } catch .invalid {
                refusal = "invalidMessage"
            } catch .unknownMethod {
                refusal = "unknownMethod"
            }
        case .failure(let error as FrameError):
            refusal = Self.name(error)
        case .failure(let error):
            refusal = "unexpected \(error)"
        }
        #expect(refusal == entry.error, "\(file): \(entry.description)")
    }

    static func name(_ error: FrameError) -> String {
        switch error {
        case .badMagic: "badMagic"
        case .unsupportedFrameVersion: "unsupportedFrameVersion"
        case .unknownFrameType: "unknownFrameType"
        case .badPayloadLength: "badPayloadLength"
        case .badRequestID: "badRequestID"
        case .truncatedFrame: "truncatedFrame"
        }
    }
}
