import Foundation
import NIOPosix
import Testing
import Logging
import UpkeepAgent
import UpkeepCore
import UpkeepTestSupport

/// `clusterDNS`'s query over a real UDP socket, against a DNS responder written apart from the
/// agent's codec (Python's `struct`, RFC 1035 by hand): an answer, SERVFAIL, silence, garbage,
/// a stray answer with another id before the right one, and one longer than 512 bytes.
@Suite(.serialized) struct ClusterDNSProbeTests {
    /// Answers every query on 127.0.0.1:PORT as MODE says: `answer` (A 10.43.0.1 for the asked
    /// name), `servfail`, `silent`, `garbage` (12 random-looking bytes), `stray` (first an answer
    /// with another id, then the right one), `long` (60 A records: 988 bytes, over UDP's 512).
    static let responder = #"""
        import socket, struct, sys
        mode = sys.argv[1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1], flush=True)
        while True:
            data, peer = s.recvfrom(512)
            qid, flags, qd = struct.unpack(">HHH", data[:6])
            end = 12
            while data[end] != 0:
                end += 1 + data[end]
            question = data[12:end + 5]
            if mode == "silent":
                continue
            if mode == "garbage":
                s.sendto(struct.pack(">H", qid) + b"\xff" * 10, peer)
                continue
            code = 2 if mode == "servfail" else 0
            count = 0 if code else (60 if mode == "long" else 1)
            def reply(rid):
                head = struct.pack(">HHHHHH", rid, 0x8580 | code, 1, count, 0, 0)
                record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + bytes([10, 43, 0, 1])
                return head + question + record * count
            if mode == "stray":
                s.sendto(reply((qid + 1) & 0xFFFF), peer)
            s.sendto(reply(qid), peer)
        """#

    static func withResponder<T>(_ mode: String, _ body: (Int) async throws -> T) async throws -> T {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", responder, mode]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        var line = Data()
        let deadline = Date().addingTimeInterval(20)
        while !line.contains(UInt8(ascii: "\n")), Date() < deadline { line.append(output.fileHandleForReading.availableData) }
        let port = try #require(Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), "the responder did not start")
        return try await body(port)
    }

    static func probe(_ port: Int) -> ClusterDNSProbe {
        ClusterDNSProbe(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
    }

    static let name = "kubernetes.default.svc.cluster.local"

    @Test func anAnswerIsReadAndAFailureIsAnAnswerToo() async throws {
        try await Self.withResponder("answer") { port in
            let outcome = await Self.probe(port).resolve(Self.name, id: 4242, timeoutSeconds: 5)
            #expect(outcome.answer?.addresses == ["10.43.0.1"] && outcome.answer?.code == .noError && outcome.problem.isEmpty, "\(outcome)")
            #expect(outcome.answer?.name == Self.name)
        }
        try await Self.withResponder("servfail") { port in
            let outcome = await Self.probe(port).resolve(Self.name, id: 1, timeoutSeconds: 5)
            #expect(outcome.answer?.code == .serverFailure && outcome.answer?.addresses == [], "\(outcome)")
        }
        try await Self.withResponder("stray") { port in
            let outcome = await Self.probe(port).resolve(Self.name, id: 77, timeoutSeconds: 5)
            #expect(outcome.answer?.id == 77 && outcome.answer?.addresses == ["10.43.0.1"], "another id's answer is not ours: \(outcome)")
        }
    }

    @Test func silenceIsBoundedAndGarbageIsSaid() async throws {
        try await Self.withResponder("silent") { port in
            // Bounded: the call returns (no timing asserted; the message names the bound reached).
            let outcome = await Self.probe(port).resolve(Self.name, id: 1, timeoutSeconds: 1)
            #expect(outcome.answer == nil && outcome.problem == "no answer from 127.0.0.1:\(port) within 1 s", "\(outcome)")
        }
        try await Self.withResponder("garbage") { port in
            let outcome = await Self.probe(port).resolve(Self.name, id: 9, timeoutSeconds: 5)
            #expect(outcome.answer == nil && outcome.problem.hasPrefix("malformed DNS message"), "\(outcome)")
        }
        // Nobody there: the port's ICMP refusal, or silence, within the bound.
        let closed = try unusedLoopbackPort()
        let nobody = await Self.probe(closed).resolve(Self.name, id: 1, timeoutSeconds: 1)
        #expect(nobody.answer == nil && !nobody.problem.isEmpty)
    }

    @Test func anAnswerOver512BytesIsCountedAndSaid() async throws {
        let directory = try TemporaryDirectory()
        let limits = AgentLimits(textfile: "\(directory.path)/agent.prom", logger: Logger(label: "test"))
        try await Self.withResponder("long") { port in
            let probe = ClusterDNSProbe(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton, limits: limits)
            let outcome = await probe.resolve(Self.name, id: 5, timeoutSeconds: 5)
            #expect(outcome.answer == nil && outcome.problem.contains("longer than the 512 bytes a DNS message over UDP may have"), "\(outcome)")
        }
        #expect(limits.count(.dnsAnswerBytes) == 1)
        let written = try String(contentsOfFile: "\(directory.path)/agent.prom", encoding: .utf8)
        #expect(written.contains("upkeep_agent_limit_reached_total{limit=\"dns_answer_bytes\"} 1"), "\(written)")
    }
}
