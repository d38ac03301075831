import Foundation
import NIOCore
import NIOPosix
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

/// Receives stage uploads and drops the bytes once the protocol has verified their digest.
struct SinkHandler: RequestHandler {
    func agentInfo() -> AgentInfo {
        AgentInfo(agentVersion: "bench", nodeName: "node-1", arch: "amd64", role: .server, k3sVersion: "v1.30.6+k3s1")
    }

    func handle(_ request: IncomingRequest) async throws -> Reply {
        guard case let .stage(stage) = request.payload else { throw ErrorResponse(.badRequest, "stage only") }
        var bytes: Int64 = 0
        _ = try await request.upload.consume { bytes += Int64($0.readableBytes) }
        return Reply(.stage(StageResult(sha256: stage.sha256, bytes: bytes, alreadyStaged: false)))
    }
}

/// SHA-256 of `block` repeated `count` times, computed before timing starts.
func digest(of block: ByteBuffer, repeated count: Int) -> [UInt8] {
    let hasher = SHA256.Hasher()
    for _ in 0..<count { hasher.update(block) }
    return hasher.finish()
}

/// One `stage` call carrying `bytes` over the agent protocol on mutual TLS: chunk frames,
/// flow control and the receiver's SHA-256 verification at the end, exactly as an artifact travels.
func artifactStream(bytes: Int) async throws {
    let material = try Material(directory: nil)
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var configuration = ServerConfiguration()
    if let window = Int(argument("--window-mib", default: "")) { configuration.streamWindowBytes = window << 20 }
    let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0,
                                               security: .tls(material.agent, expecting: .roles([.controller])),
                                               handler: SinkHandler(), configuration: configuration, eventLoopGroup: serverGroup)
    let client = try await ProtocolClient.connect(host: "127.0.0.1", port: server.localAddress.port!,
                                                  security: .tls(material.controller, expecting: .identity(material.node)),
                                                  eventLoopGroup: clientGroup)
    let blockBytes = 256 * 1024
    let count = bytes / blockBytes
    var block = ByteBufferAllocator().buffer(capacity: blockBytes)
    block.writeRepeatingByte(0x5a, count: blockBytes)
    let sha = SHA256Hex(digest: digest(of: block, repeated: count))
    let chunk = block
    // The controller sends a release it already checked against its sha256sum file: the digest
    // is known, only the agent hashes the bytes (and compares).
    let upload = ChunkSource(sha256: sha) { emit in
        for _ in 0..<count { try await emit(chunk) }
    }
    let request = StageRequest(operationID: "bench-stage", k3sVersion: "v1.31.0+k3s1", sha256: sha, bytes: Int64(count * blockBytes))
    let start = Date()
    let result = try await client.call(request, upload: upload, deadline: .now + .seconds(600))
    let elapsed = Date().timeIntervalSince(start)
    guard result.bytes == Int64(count * blockBytes) else { throw BenchFailure(description: "short upload: \(result.bytes)") }
    print("bytes=\(result.bytes) seconds=\(String(format: "%.3f", elapsed)) bytes_per_second=\(Int(Double(result.bytes) / elapsed)) cipher=TLS_AES_256_GCM_SHA384")
    await client.close()
    await server.shutdown()
    try await serverGroup.shutdownGracefully()
    try await clientGroup.shutdownGracefully()
}
