import Testing
@testable import UpkeepFleet

@Suite struct ChecksumFileTests {
    @Test func findsTheBinaryLineAmongImageTarballs() {
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        let text = "\(a)  k3s-airgap-images-amd64.tar.gz\n\(b)  k3s\n"
        #expect(ChecksumFile.digest(of: "k3s", in: text) == b)
        #expect(ChecksumFile.digest(of: "k3s-arm64", in: text) == nil)
        #expect(ChecksumFile.digest(of: "k3s", in: "\(b.uppercased()) *k3s\r\n") == b)
        #expect(ChecksumFile.digest(of: "k3s", in: "xyz  k3s\n") == nil)
    }
}

@Suite struct ArtifactSourceTests {
    @Test func configuredSourcesFollowTheReleasesSection() throws {
        #expect(try ArtifactSource.configured(mirror: nil, githubAPI: "https://api.github.com") == .github)
        #expect(try ArtifactSource.configured(mirror: nil, githubAPI: "http://127.0.0.1:8080").description == "http://127.0.0.1:8080/")
        #expect(try ArtifactSource.configured(mirror: "/srv/k3s-mirror", githubAPI: "https://api.github.com") == .directory("/srv/k3s-mirror"))
        #expect(try ArtifactSource.configured(mirror: "https://mirror.example/upkeep", githubAPI: "https://api.github.com").description
                == "https://mirror.example/upkeep")
        #expect(ArtifactSource.relativePath(tag: "v1.31.2+k3s1", asset: "k3s", encoded: true) == "k3s-io/k3s/releases/download/v1.31.2%2Bk3s1/k3s")
    }
}

@Suite struct AgentEndpointTests {
    @Test func parsesHostPortAndRefusesTheRest() {
        #expect(AgentEndpoint("10.0.0.5:9443") == AgentEndpoint(host: "10.0.0.5", port: 9443))
        #expect(AgentEndpoint(" node-1.example:1 ") == AgentEndpoint(host: "node-1.example", port: 1))
        #expect(AgentEndpoint("[fd00::1]:9443")?.host == "fd00::1")
        for bad in ["10.0.0.5", "10.0.0.5:0", "10.0.0.5:70000", "fd00::1:9443", ":9443", "a b:1", "[fd00::1]9443", "host:port"] {
            #expect(AgentEndpoint(bad) == nil, "\(bad) was accepted")
        }
    }
}
