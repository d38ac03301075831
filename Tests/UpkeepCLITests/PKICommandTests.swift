import Foundation
import Testing
import UpkeepPKI
import UpkeepTestSupport

@Suite struct PKICommandTests {
    private func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    private func contents(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    @Test func initIssueAndShowProduceFilesOpenSSLAccepts() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")

        let created = try UpkeepBinary.run("pki", "init", "--dir", dir)
        #expect(created.status == 0, "\(created.error)")
        #expect(created.output.contains("Created CA \"upkeep cluster CA\" (ecdsa-p256)"))
        #expect(created.output.contains("\(dir)/ca.key (secret, mode 0600)"))

        let agent = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--days", "30",
                                         "--dns", "node-1.lan", "--ip", "10.0.0.1", "--ip", "fd00::1")
        #expect(agent.status == 0, "\(agent.error)")
        #expect(agent.output.contains("Issued upkeep://agent/node-1"))
        let controller = try UpkeepBinary.run("pki", "issue", "controller", "--dir", dir)
        #expect(controller.status == 0, "\(controller.error)")
        #expect(controller.output.contains("Issued upkeep://controller/controller"))

        for key in ["ca.key", "agents/node-1.key", "controllers/controller.key"] {
            #expect(mode("\(dir)/\(key)") == 0o600, "\(key)")
        }
        #expect(mode(dir) == 0o700)
        let verified = try openssl(["verify", "-CAfile", "\(dir)/ca.crt", "\(dir)/agents/node-1.crt", "\(dir)/controllers/controller.crt"])
        #expect(verified.status == 0, "\(verified.output) \(verified.error)")

        let shown = try UpkeepBinary.run("pki", "show", "\(dir)/agents/node-1.crt")
        #expect(shown.status == 0, "\(shown.error)")
        let certificate = try Certificate.loadChain(pemFile: "\(dir)/agents/node-1.crt")[0]
        for line in ["Subject:    CN=node-1", "Issuer:     CN=upkeep cluster CA", "Role:       agent", "Node:       node-1",
                     "SANs:       URI:upkeep://agent/node-1, DNS:node-1.lan, IP Address:10.0.0.1, IP Address:fd00::1",
                     // 30 days from issuance, a few seconds ago: whole days remaining round down.
                     "Validity:   valid for 29 days", "Serial:     \(certificate.serialHex)",
                     "SHA-256:    \(certificate.sha256Fingerprint)", "CA:         no"] {
            #expect(shown.output.contains(line + "\n"), "missing \(line) in\n\(shown.output)")
        }
        let controllerShown = try UpkeepBinary.run("pki", "show", "\(dir)/controllers/controller.crt")
        #expect(controllerShown.output.contains("Role:       controller\nName:       controller\n"))
        let caShown = try UpkeepBinary.run("pki", "show", "\(dir)/ca.crt")
        #expect(caShown.output.contains("Role:       none (CA certificate)\n"))
        #expect(caShown.output.contains("CA:         yes\n"))
    }

    /// A node name may have 253 characters (a DNS-1123 subdomain, docs/pki.md); X.509 allows a
    /// CN of 64. The CN is cut, the URI SAN carries the whole name, and the files get a name that
    /// fits a file system's 255 bytes. `pki init` into an existing 0755 directory makes it 0700.
    @Test func aNodeNameOf253CharactersIsIssuedAndAnOpenDirectoryIsMadePrivate() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let created = try UpkeepBinary.run("pki", "init", "--dir", dir)
        #expect(created.status == 0, "\(created.error)")
        #expect(mode(dir) == 0o700, "pki init left \(String(mode(dir) ?? 0, radix: 8))")

        let label = String(repeating: "a", count: 63)
        for name in [[label, label, label, String(repeating: "b", count: 61)].joined(separator: "."),   // 253
                     "n" + String(repeating: "0", count: 64)] {                                        // 65
            let issued = try UpkeepBinary.run("pki", "issue", "agent", name, "--dir", dir)
            #expect(issued.status == 0, "\(name.count) characters: \(issued.error)")
            #expect(issued.output.contains("Issued upkeep://agent/\(name)"))
            let file = PKIDirectory(path: dir).certificatePath(for: try PeerIdentity(role: .agent, name: name))
            let text = try openssl(["x509", "-in", file, "-noout", "-subject", "-ext", "subjectAltName"])
            #expect(text.status == 0, "\(text.error)")
            #expect(text.output.contains("subject=CN = \(name.prefix(64))\n") && text.output.contains("URI:upkeep://agent/\(name)\n"), "\(text.output)")
            let verified = try openssl(["verify", "-CAfile", "\(dir)/ca.crt", file])
            #expect(verified.status == 0, "\(verified.output) \(verified.error)")
        }
    }

    @Test func existingKeysAreNotOverwrittenWithoutForce() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")
        #expect(try UpkeepBinary.run("pki", "init", "--dir", dir, "--key-type", "ed25519").status == 0)
        let caKey = try contents("\(dir)/ca.key")

        let again = try UpkeepBinary.run("pki", "init", "--dir", dir)
        #expect(again.status == 1)
        #expect(again.output.isEmpty)
        #expect(again.error == "Error: ca.key already exists in \(dir); pass --force to replace it "
            + "(every issued certificate would then need reissuing)\n")
        #expect(try contents("\(dir)/ca.key") == caKey)

        #expect(try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir).status == 0)
        let agentKey = try contents("\(dir)/agents/node-1.key")
        let reissue = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir)
        #expect(reissue.status == 1)
        #expect(reissue.error.contains("agents/node-1.key already exists in \(dir); pass --force to replace it"))
        #expect(try contents("\(dir)/agents/node-1.key") == agentKey)

        let forced = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--force")
        #expect(forced.status == 0, "\(forced.error)")
        #expect(try contents("\(dir)/agents/node-1.key") != agentKey)
        #expect(mode("\(dir)/agents/node-1.key") == 0o600)
        #expect(try PrivateKey(pemFile: "\(dir)/agents/node-1.key").keyType == .ed25519)

        let forcedCA = try UpkeepBinary.run("pki", "init", "--dir", dir, "--force")
        #expect(forcedCA.status == 0, "\(forcedCA.error)")
        #expect(try contents("\(dir)/ca.key") != caKey)
    }

    @Test func usageErrorsExitWith2AndShowUsage() throws {
        let temporary = try TemporaryDirectory()
        let missingDir = try UpkeepBinary.run("pki", "init")
        #expect(missingDir.status == 2)
        #expect(missingDir.error.contains("Error: Missing expected argument '--dir <DIR>'"))
        #expect(missingDir.error.contains("Usage: upkeep pki init --dir <DIR>"))

        let cases: [([String], String)] = [
            (["pki", "issue", "agent", "Node_1", "--dir", temporary.path], "'Node_1' is not a valid node or controller name"),
            (["pki", "issue", "agent", "--dir", temporary.path], "Missing expected argument '<NODE>'"),
            (["pki", "issue", "controller", "../x", "--dir", temporary.path], "'../x' is not a valid node or controller name"),
            (["pki", "issue", "agent", "n", "--dir", temporary.path, "--ip", "1.2.3"], "'1.2.3' is not an IPv4 or IPv6 address"),
            (["pki", "issue", "agent", "n", "--dir", temporary.path, "--dns", "a b"], "'a b' is not a valid DNS name"),
            (["pki", "init", "--dir", temporary.path, "--days", "0"], "--days must be between 1 and 36500"),
            (["pki", "init", "--dir", temporary.path, "--key-type", "rsa"], "use one of: ecdsa-p256, ed25519"),
            (["pki", "frobnicate"], "Unexpected argument 'frobnicate'"),
        ]
        for (arguments, message) in cases {
            let run = try UpkeepBinary.run(arguments)
            #expect(run.status == 2, "\(arguments): \(run.error)")
            #expect(run.error.contains(message), "\(arguments): \(run.error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: temporary.path).isEmpty)
    }

    @Test func operatorErrorsExitWith1AndSayWhatToDo() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")
        let noCA = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir)
        #expect(noCA.status == 1)
        #expect(noCA.error.contains("run 'upkeep pki init --dir \(dir)' first"))

        #expect(try UpkeepBinary.run("pki", "init", "--dir", dir, "--days", "10").status == 0)
        let tooLong = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--days", "30")
        #expect(tooLong.status == 1)
        #expect(tooLong.error.contains("the certificate would outlive the CA"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/agents/node-1.key"))

        chmod("\(dir)/ca.key", 0o644)
        let open = try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--days", "5")
        #expect(open.status == 1)
        #expect(open.error.contains("is accessible by group or others (mode 644); run 'chmod 600 \(dir)/ca.key'"))

        let missing = try UpkeepBinary.run("pki", "show", temporary.file("absent.crt"))
        #expect(missing.status == 1)
        #expect(missing.error == "Error: cannot read \(temporary.file("absent.crt")): no such file\n")
    }

    @Test func showDescribesExpiredAndNotYetValidCertificates() throws {
        let temporary = try TemporaryDirectory()
        let now = Date()
        let ca = try CertificateAuthority.create(commonName: "show CA", keyType: .ecdsaP256,
                                                 validity: .days(100, from: now.addingTimeInterval(-50 * 86_400)))
        let identity = try PeerIdentity(role: .agent, name: "node-9")
        let expired = try ca.issue(identity: identity, keyType: .ecdsaP256,
                                   validity: ValidityPeriod(notBefore: now.addingTimeInterval(-20 * 86_400),
                                                            notAfter: now.addingTimeInterval(-3.5 * 86_400)))
        let future = try ca.issue(identity: identity, keyType: .ecdsaP256, validity: .days(5, from: now.addingTimeInterval(2.5 * 86_400)))
        let expiredPath = try temporary.write(expired.certificate.pem() + ca.certificate.pem(), to: "expired.crt")
        let futurePath = try temporary.write(future.certificate.pem(), to: "future.crt")

        let shownExpired = try UpkeepBinary.run("pki", "show", expiredPath)
        #expect(shownExpired.status == 0)
        #expect(shownExpired.output.contains("Validity:   expired 3 days ago\n"))
        #expect(shownExpired.output.contains("(1 more certificate in the file)\n"))
        let shownFuture = try UpkeepBinary.run("pki", "show", futurePath)
        #expect(shownFuture.output.contains("Validity:   not yet valid (starts in 2 days)\n"))
    }

    @Test func statusListsEveryIdentitySoonestExpiryFirstWithItsRenewalPoint() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")
        #expect(try UpkeepBinary.run("pki", "init", "--dir", dir, "--days", "30").status == 0)
        #expect(try UpkeepBinary.run("pki", "issue", "controller", "--dir", dir, "--days", "20").status == 0)
        #expect(try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--days", "10").status == 0)
        // node-2 is past two thirds of its life (due for renewal), node-3 has expired.
        let now = Date()
        let directory = PKIDirectory(path: dir)
        try directory.issue(try PeerIdentity(role: .agent, name: "node-2"),
                            validity: ValidityPeriod(notBefore: now.addingTimeInterval(-8 * 86_400), notAfter: now.addingTimeInterval(2.5 * 86_400)))
        try directory.issue(try PeerIdentity(role: .agent, name: "node-3"),
                            validity: ValidityPeriod(notBefore: now.addingTimeInterval(-8 * 86_400), notAfter: now.addingTimeInterval(-1.5 * 86_400)))
        _ = try temporary.write("not a certificate\n", to: "pki/agents/broken.crt")

        let table = try UpkeepBinary.run("pki", "status", "--dir", dir)
        #expect(table.status == 0, "\(table.error)")
        let lines = table.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 7, "\(table.output)")
        #expect(lines[0].hasPrefix("IDENTITY") && lines[0].contains("RENEW AFTER"))
        #expect(lines[1].hasPrefix("?") && lines[1].contains("unreadable") && lines[1].hasSuffix("\(dir)/agents/broken.crt"), "\(table.output)")
        #expect(lines[2].hasPrefix("upkeep://agent/node-3") && lines[2].contains("expired 1 day ago"), "\(table.output)")
        #expect(lines[3].hasPrefix("upkeep://agent/node-2") && lines[3].contains("valid for 2 days") && lines[3].contains("(due)"), "\(table.output)")
        #expect(lines[4].hasPrefix("upkeep://agent/node-1") && lines[4].contains("valid for 9 days") && !lines[4].contains("(due)"))
        #expect(lines[5].hasPrefix("upkeep://controller/controller") && lines[5].contains("valid for 19 days"))
        #expect(lines[6].hasPrefix("cluster CA") && lines[6].contains("valid for 29 days") && lines[6].hasSuffix("\(dir)/ca.crt"))

        // Without --dir, upkeep.yaml's pki section says where; JSON has the renewal point at two thirds.
        let config = try temporary.write("pki: {ca: pki/ca.crt, certificate: pki/controllers/controller.crt, key: pki/controllers/controller.key}\n",
                                         to: "upkeep.yaml")
        let json = try UpkeepBinary.run("--config", config, "pki", "status", "-o", "json")
        #expect(json.status == 0, "\(json.error)")
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
        #expect(entries.count == 6)
        let node1 = try #require(entries.first { $0["identity"] as? String == "upkeep://agent/node-1" })
        let formatter = ISO8601DateFormatter()
        let notBefore = try #require(formatter.date(from: node1["notBefore"] as? String ?? ""))
        let notAfter = try #require(formatter.date(from: node1["notAfter"] as? String ?? ""))
        let renewAfter = try #require(formatter.date(from: node1["renewAfter"] as? String ?? ""))
        #expect(abs(renewAfter.timeIntervalSince(notBefore) - notAfter.timeIntervalSince(notBefore) * 2 / 3) < 2)

        let empty = try UpkeepBinary.run("pki", "status", "--dir", temporary.file("nothing"))
        #expect(empty.status == 1 && empty.error.contains("no certificates in"), "\(empty.error)")
    }

    @Test func revokeDeniesTheNodesCurrentCertificateUntilANewOneIsIssued() throws {
        let temporary = try TemporaryDirectory()
        let dir = temporary.file("pki")
        #expect(try UpkeepBinary.run("pki", "init", "--dir", dir).status == 0)
        #expect(try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir).status == 0)
        let fingerprint = try Certificate.loadChain(pemFile: "\(dir)/agents/node-1.crt")[0].sha256Fingerprint

        let revoked = try UpkeepBinary.run("pki", "revoke", "node-1", "--dir", dir)
        #expect(revoked.status == 0, "\(revoked.error)")
        #expect(revoked.output.contains("Revoked upkeep://agent/node-1 (SHA-256 \(fingerprint)) in \(dir)/revoked.txt"), "\(revoked.output)")
        let list = try CertificateDenyList.load(path: "\(dir)/revoked.txt")
        #expect(list.entries.map(\.fingerprint) == [fingerprint] && list.entries.first?.identity == "upkeep://agent/node-1")
        let again = try UpkeepBinary.run("pki", "revoke", "node-1", "--dir", dir)
        #expect(again.status == 0 && again.output.contains("already revoked"), "\(again.output)")
        #expect(try CertificateDenyList.load(path: "\(dir)/revoked.txt").entries.count == 1)
        let status = try UpkeepBinary.run("pki", "status", "--dir", dir).output
        #expect(status.split(separator: "\n").contains { $0.hasPrefix("upkeep://agent/node-1") && $0.contains("revoked") }, "\(status)")

        // A new certificate for the node is not on the list.
        #expect(try UpkeepBinary.run("pki", "issue", "agent", "node-1", "--dir", dir, "--force").status == 0)
        let renewed = try UpkeepBinary.run("pki", "status", "--dir", dir).output
        #expect(renewed.split(separator: "\n").contains { $0.hasPrefix("upkeep://agent/node-1") && $0.contains("valid for") }, "\(renewed)")

        let unknown = try UpkeepBinary.run("pki", "revoke", "node-9", "--dir", dir)
        #expect(unknown.status == 1 && unknown.error.contains("\(dir)/agents/node-9.crt") && unknown.error.contains("--certificate"), "\(unknown.error)")
        let wrong = try UpkeepBinary.run("pki", "revoke", "node-2", "--dir", dir, "--certificate", "\(dir)/agents/node-1.crt")
        #expect(wrong.status == 1 && wrong.error.contains("not the agent certificate of node-2"), "\(wrong.error)")
        #expect(try UpkeepBinary.run("pki", "revoke", "../etc", "--dir", dir).status == 2)
    }

    @Test func rootCommandAnswersHelpAndVersion() throws {
        let version = try UpkeepBinary.run("--version")
        #expect(version.status == 0)
        #expect(version.output == "0.1.0\n")
        let help = try UpkeepBinary.run("--help")
        #expect(help.status == 0)
        #expect(help.output.contains("pki"))
        let pkiHelp = try UpkeepBinary.run("pki", "issue", "agent", "--help")
        #expect(pkiHelp.status == 0)
        #expect(pkiHelp.output.contains("--dns <NAME>"))
    }
}
