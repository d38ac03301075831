import Foundation
import Testing
@testable import UpkeepAgent
import UpkeepEnrollment
import UpkeepTestSupport

@Suite struct NodeEnrollmentTests {
    @Test func discoveredConfigurationIsWhatTheAgentReadsBack() throws {
        let directory = try TemporaryDirectory()
        let root = directory.file("node")
        try FileManager.default.createDirectory(atPath: "\(root)/etc/systemd/system", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(root)/etc/rancher/k3s", withIntermediateDirectories: true)
        try "ExecStart=/usr/local/bin/k3s \\\n    server\n".write(toFile: "\(root)/etc/systemd/system/k3s.service", atomically: false, encoding: .utf8)
        try "node-name: server-1\ndata-dir: /srv/k3s\n".write(toFile: "\(root)/etc/rancher/k3s/config.yaml", atomically: false, encoding: .utf8)
        var options = NodeEnrollment.Options(controller: "127.0.0.1:9662", token: "abcdef.0123456789abcdef", caHash: "sha256:")
        options.root = root
        options.probeHost = "10.0.0.5"
        let config = try NodeEnrollment.discover(options)
        #expect(config.nodeName == "server-1" && config.unit == "k3s" && config.k3sBinary == "\(root)/usr/local/bin/k3s")
        #expect(config.k3sDataDir == "\(root)/srv/k3s")
        #expect(config.kubeconfig == "\(root)/etc/rancher/k3s/k3s.yaml")
        #expect(config.probes.supervisorPingURL == "https://10.0.0.5:6443/ping")
        #expect(try ConfigLoader.parse(NodeEnrollment.configText(config)) == config)
        #expect(config.clusterDNSHost == "10.43.0.10" && config.clusterDNSPort == 53, "k3s's default without --cluster-dns")
        // --cluster-dns: the address `clusterDNS` asks, written to agent.yaml and read back.
        options.clusterDNS = "10.96.0.10:5353"
        let custom = try NodeEnrollment.discover(options)
        #expect(custom.clusterDNSHost == "10.96.0.10" && custom.clusterDNSPort == 5353)
        #expect(NodeEnrollment.configText(custom).contains("clusterDNS: \"10.96.0.10:5353\"\n"))
        #expect(try ConfigLoader.parse(NodeEnrollment.configText(custom)) == custom)
    }

    @Test func aNodeNameWithPathCharactersIsRefused() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.file("etc/systemd/system"), withIntermediateDirectories: true)
        try "".write(toFile: directory.file("etc/systemd/system/k3s-agent.service"), atomically: false, encoding: .utf8)
        for name in ["../etc", "a/b", "Node_1", ""] {
            var options = NodeEnrollment.Options(controller: "127.0.0.1:9662", token: "abcdef.0123456789abcdef", caHash: "sha256:")
            options.root = directory.path
            options.nodeName = name
            #expect(throws: JoinError.self) { try NodeEnrollment.discover(options) }
        }
    }
}
