import Foundation
import Testing
import UpkeepPKI
import UpkeepTestSupport

/// `upkeep token`, `upkeep join-server` and `upkeep-agent join` as real processes: a TLS join
/// server with its state database, a node directory with a k3s unit and config, files and modes.
@Suite(.serialized) struct EnrollmentTests {
    /// A controller (PKI, upkeep.yaml, a running join server) and one node's root.
    final class Cluster {
        let directory: TemporaryDirectory
        let config: String
        let address: String
        let server: Process
        var node: String { directory.file("node") }

        init() throws {
            directory = try TemporaryDirectory()
            #expect(try UpkeepBinary.run("pki", "init", "--dir", directory.file("pki")).status == 0)
            #expect(try UpkeepBinary.run("pki", "issue", "controller", "--dir", directory.file("pki")).status == 0)
            address = "127.0.0.1:\(try unusedLoopbackPort())"
            config = try directory.write("""
                pki: {ca: pki/ca.crt, certificate: pki/controllers/controller.crt, key: pki/controllers/controller.key}
                stateDir: state
                join: {listen: "\(address)"}

                """, to: "upkeep.yaml")
            server = Process()
            server.executableURL = URL(fileURLWithPath: try UpkeepBinary.path())
            server.arguments = ["join-server", "--config", config]
            let log = directory.file("join-server.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            server.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            server.standardError = server.standardOutput
            try server.run()
            let deadline = Date().addingTimeInterval(20)
            while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("join server listening"), Date() < deadline {
                guard server.isRunning else { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            for directory in ["etc/systemd/system", "etc/rancher/k3s"] {
                try FileManager.default.createDirectory(atPath: "\(node)/\(directory)", withIntermediateDirectories: true)
            }
            try "[Service]\nExecStart=/opt/k3s/bin/k3s \\\n    agent\n".write(toFile: "\(node)/etc/systemd/system/k3s-agent.service", atomically: false, encoding: .utf8)
            try "node-name: node-1\nwith-node-id: false\n".write(toFile: "\(node)/etc/rancher/k3s/config.yaml", atomically: false, encoding: .utf8)
        }

        deinit {
            kill(server.processIdentifier, SIGTERM)
            server.waitUntilExit()
        }

        /// `upkeep token create` with `arguments`: the token and the CA hash it printed.
        func token(_ arguments: String...) throws -> (token: String, caHash: String) {
            let created = try UpkeepBinary.run(["token", "create", "--config", config] + arguments)
            #expect(created.status == 0, "\(created.error)")
            let words = created.output.split(whereSeparator: \.isWhitespace).map(String.init)
            let token = words.firstIndex(of: "--token").map { words[$0 + 1] } ?? ""
            let caHash = words.firstIndex(of: "--ca-hash").map { words[$0 + 1] } ?? ""
            #expect(created.output.contains("upkeep-agent join --controller \(address) --token \(token) --ca-hash sha256:"))
            return (token, caHash)
        }

        /// `upkeep-agent join` against this cluster for the node directory.
        func join(token: String, caHash: String, _ extra: String...) throws -> ProcessResult {
            let agent = (try UpkeepBinary.path() as NSString).deletingLastPathComponent + "/upkeep-agent"
            return try runProcess(agent, ["join", "--controller", address, "--token", token, "--ca-hash", caHash, "--root", node] + extra)
        }

        func tokenList() throws -> String { try UpkeepBinary.run("token", "list", "--config", config).output }

        var nodeFiles: [String] {
            ["etc/upkeep/agent.yaml", "etc/upkeep/tls/agent.key", "etc/upkeep/tls/agent.crt", "etc/upkeep/tls/ca.crt"].map { "\(node)/\($0)" }
        }
    }

    private func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func aNodeJoinsWithATokenAndItsKeyNeverLeavesIt() throws {
        let cluster = try Cluster()
        let (token, caHash) = try cluster.token("--node", "node-1", "--ttl", "1h")
        #expect(token.count == 23 && caHash.hasPrefix("sha256:"))
        // Stored hashed: the secret half is nowhere in the state database.
        let database = try Data(contentsOf: URL(fileURLWithPath: cluster.directory.file("state/upkeep.db")))
        #expect(database.range(of: Data(token.split(separator: ".")[1].utf8)) == nil)

        let joined = try cluster.join(token: token, caHash: caHash, "--no-start")
        #expect(joined.status == 0, "\(joined.error)")
        #expect(joined.output.contains("node node-1 enrolled"))
        let (config, key, certificate, ca) = (cluster.nodeFiles[0], cluster.nodeFiles[1], cluster.nodeFiles[2], cluster.nodeFiles[3])
        #expect(mode(key) == 0o600 && mode(certificate) == 0o644 && mode(ca) == 0o644 && mode(config) == 0o644)
        let verified = try openssl(["verify", "-purpose", "sslclient", "-CAfile", cluster.directory.file("pki/ca.crt"), certificate])
        #expect(verified.status == 0, "\(verified.output) \(verified.error)")
        #expect(try Certificate.loadChain(pemFile: certificate)[0].matches(PrivateKey(pemFile: key)))
        #expect(try PeerIdentity.from(Certificate.loadChain(pemFile: certificate)[0]) == PeerIdentity(role: .agent, name: "node-1"))
        // The controller keeps a copy of the certificate, and no agent key: it never saw one.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("pki/agents")) == ["node-1.crt"])
        let copy = cluster.directory.file("pki/agents/node-1.crt")
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == String(contentsOfFile: certificate, encoding: .utf8) && mode(copy) == 0o644)
        let status = try UpkeepBinary.run("pki", "status", "--config", cluster.config)
        let expires = String(try Certificate.loadChain(pemFile: certificate)[0].notAfter.formatted(.iso8601).prefix(10))
        let row = status.output.split(separator: "\n").first { $0.hasPrefix("upkeep://agent/node-1 ") }?.split(separator: " ") ?? []
        #expect(row.count > 2 && row[1] == expires && row.last?.hasSuffix("pki/agents/node-1.crt") == true, "\(status.output)")

        let text = try String(contentsOfFile: config, encoding: .utf8)
        #expect(text.contains("nodeName: node-1"))
        #expect(text.contains("binary: \"\(cluster.node)/opt/k3s/bin/k3s\", unit: k3s-agent"))
        #expect(text.contains("kubeconfig: \"\(cluster.node)/var/lib/rancher/k3s/agent/kubelet.kubeconfig\""))
        #expect(text.contains("key: \"\(key)\""))
        #expect(try cluster.tokenList().contains("used up   1/1   node-1"))

        // The same token again: refused by the node (enrolled) before anything is sent ...
        let again = try cluster.join(token: token, caHash: caHash, "--no-start")
        #expect(again.status == 1 && again.error.contains("this node is enrolled already"), "\(again.error)")
        // ... and by the server (used up) with --force.
        let reused = try cluster.join(token: token, caHash: caHash, "--no-start", "--force")
        #expect(reused.status == 1 && reused.error.contains("was already used"), "\(reused.error)")
        #expect(try String(contentsOfFile: certificate, encoding: .utf8) == (try Certificate.loadChain(pemFile: certificate)[0].pem()))
        // A refused join leaves the copy as it was, with no staged file beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("pki/agents")) == ["node-1.crt"])
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == String(contentsOfFile: certificate, encoding: .utf8))

        // The node's files lost: a new token still refuses a second enrollment without --force.
        for file in cluster.nodeFiles { try FileManager.default.removeItem(atPath: file) }
        let second = try cluster.token("--uses", "2")
        let refused = try cluster.join(token: second.token, caHash: second.caHash, "--no-start")
        #expect(refused.status == 1 && refused.error.contains("HTTP 409") && refused.error.contains("node node-1 already enrolled"), "\(refused.error)")
        #expect(cluster.nodeFiles.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        let forced = try cluster.join(token: second.token, caHash: second.caHash, "--no-start", "--force")
        #expect(forced.status == 0, "\(forced.error)")
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == String(contentsOfFile: certificate, encoding: .utf8))
        #expect(try cluster.tokenList().contains("active    1/2   (any)"))
    }

    @Test func aWrongCAHashIsRefusedBeforeTheTokenIsSent() throws {
        let cluster = try Cluster()
        let (token, _) = try cluster.token()
        let other = try CertificateAuthority.create(commonName: "someone else", keyType: .ecdsaP256, validity: .days(1))
        let joined = try cluster.join(token: token, caHash: CAHash(of: other.certificate).description, "--no-start")
        #expect(joined.status == 1)
        #expect(joined.error.contains("the token was NOT sent"), "\(joined.error)")
        // The server never saw the token: still unused.
        #expect(try cluster.tokenList().contains("active    0/1"))
        #expect(cluster.nodeFiles.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        let malformed = try cluster.join(token: token, caHash: "sha256:abc", "--no-start")
        #expect(malformed.status == 1 && malformed.error.contains("is not a CA hash"), "\(malformed.error)")
    }

    @Test func expiredRevokedUnknownAndOtherNodesTokensAreRefused() throws {
        let cluster = try Cluster()
        let expiring = try cluster.token("--ttl", "1s")
        let revoked = try cluster.token()
        let otherNode = try cluster.token("--node", "node-9")
        let revokedID = String(revoked.token.prefix(6))
        #expect(try UpkeepBinary.run("token", "revoke", revokedID, "--config", cluster.config).output.contains("token \(revokedID) revoked"))
        Thread.sleep(forTimeInterval: 1.2)

        let cases: [(String, String)] = [
            (expiring.token, "expired at"),
            (revoked.token, "was revoked at"),
            ("abcdef.0123456789abcdef", "the token is not known to this controller"),
            (String(otherNode.token.prefix(7)) + "0123456789abcdef", "the token is not known to this controller"),
            (otherNode.token, "may only enroll node node-9, not node-1"),
        ]
        for (token, message) in cases {
            let joined = try cluster.join(token: token, caHash: expiring.caHash, "--no-start")
            #expect(joined.status == 1 && joined.error.contains("HTTP 403") && joined.error.contains(message), "\(token): \(joined.error)")
            #expect(cluster.nodeFiles.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        }
        let malformed = try cluster.join(token: "not-a-token", caHash: expiring.caHash, "--no-start")
        #expect(malformed.status == 1 && malformed.error.contains("copy it whole"), "\(malformed.error)")
        let pathName = try cluster.join(token: otherNode.token, caHash: expiring.caHash, "--no-start", "--node-name", "../etc")
        #expect(pathName.status == 1 && pathName.error.contains("is not a valid node or controller name"), "\(pathName.error)")
        #expect(try cluster.tokenList().contains("active    0/1   node-9"))
        let unknown = try UpkeepBinary.run("token", "revoke", "zzzzzz", "--config", cluster.config)
        #expect(unknown.status != 0 && unknown.error.contains("no token zzzzzz"))
    }

    @Test func joinStartsTheAgentThroughSystemctl() throws {
        let cluster = try Cluster()
        let (token, caHash) = try cluster.token()
        let record = cluster.directory.file("systemctl.args")
        let systemctl = try cluster.directory.write("#!/bin/sh\necho \"$@\" >> \(record)\n", to: "systemctl")
        chmod(systemctl, 0o755)
        let joined = try cluster.join(token: token, caHash: caHash, "--systemctl", systemctl, "--listen", "127.0.0.7:9700")
        #expect(joined.status == 0, "\(joined.error)")
        #expect(try String(contentsOfFile: record, encoding: .utf8) == "enable --now upkeep-agent\n")
        let config = try String(contentsOfFile: cluster.nodeFiles[0], encoding: .utf8)
        #expect(config.contains("listen: {address: \"127.0.0.7\", port: 9700}"))
        #expect(config.contains("systemctl: \"\(systemctl)\""))
    }

    /// `systemd-analyze verify` on deploy/upkeep-join-server.service as shipped (ExecStart pointed
    /// at the built binary); hardened as deploy/'s other units, writing only the state directory and the agents'
    /// certificate copies.
    @Test func theJoinServerUnitPassesSystemdAnalyzeVerify() throws {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy").path
        let unit = try String(contentsOfFile: "\(deploy)/upkeep-join-server.service", encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/local/bin/upkeep join-server --config /etc/upkeep/upkeep.yaml\n"))
        for line in ["ProtectSystem=strict", "StateDirectory=upkeep", "ReadWritePaths=-/etc/upkeep/pki/agents", "NoNewPrivileges=yes", "CapabilityBoundingSet=", "Restart=on-failure"] {
            #expect(unit.contains("\n\(line)\n"), "missing \(line)")
        }
        let directory = try TemporaryDirectory()
        let path = try directory.write(unit.replacingOccurrences(of: "/usr/local/bin/upkeep ", with: try UpkeepBinary.path() + " "),
                                       to: "upkeep-join-server.service")
        let result = try runProcess("systemd-analyze", ["verify", path], timeoutSeconds: 60)
        #expect(result.status == 0 && result.output.isEmpty && result.error.isEmpty, "systemd-analyze: \(result.output)\(result.error)")
    }
}
