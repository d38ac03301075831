import Testing
import UpkeepHTTP
@testable import UpkeepCLI

/// http:// release sources (issue 19): refused without `insecure`, warned about with it, at
/// most once an hour per source; loopback is neither.
@Suite struct ReleaseTransportTests {
    @Test func plainHTTPIsRefusedWithoutInsecureAndWarnedAboutOnceWithIt() throws {
        let url = "http://mirror-\(UInt32.random(in: 0...UInt32.max)).example/k3s"
        var lines: [String] = []
        #expect { try ReleaseTransport.check([("mirror", url)], insecure: false, override: "releases.insecure: true", warn: { lines.append($0) }) } throws: {
            "\($0)".contains("\(url) is plain http://") && "\($0)".contains("set releases.insecure: true")
        }
        #expect(lines.isEmpty)
        let usesBefore = ReleaseTransport.insecureUses.count(.mirror)
        for _ in 0..<3 {
            try ReleaseTransport.check([("mirror", url)], insecure: true, override: "", warn: { lines.append($0) })
        }
        #expect(lines.count == 1 && lines[0].contains(url) && lines[0].hasPrefix("warning: mirror"), "\(lines)")
        // Every use is counted, warned about or not (upkeep_release_insecure_uses_total).
        #expect(ReleaseTransport.insecureUses.count(.mirror) - usesBefore >= 3)
        // https, and loopback over http, pass without a word.
        let quietBefore = ReleaseTransport.insecureUses.count(.githubAPI)
        for quiet in ["https://mirror.example/k3s", "http://127.0.0.1:8123", "http://127.4.0.1:9/x", "http://localhost:8080", "http://[::1]:80"] {
            try ReleaseTransport.check([("github-api", quiet)], insecure: false, override: "", warn: { lines.append($0) })
        }
        #expect(lines.count == 1, "\(lines)")
        #expect(ReleaseTransport.insecureUses.count(.githubAPI) == quietBefore, "https and loopback are no insecure use")
        #expect(!ReleaseTransport.isLoopback("http://127.0.0.1.example.com/") && !ReleaseTransport.isLoopback("http://10.0.0.1/"))
    }
}
