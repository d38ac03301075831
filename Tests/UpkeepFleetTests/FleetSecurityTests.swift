import Foundation
import Testing
import UpkeepFleet
import UpkeepPKI
import UpkeepTestSupport

/// The controller checks its own identity before it dials any agent, as the agent does before it
/// serves: the same refusals, with the controller's remedy.
@Suite("The controller refuses its own bad identity files")
struct FleetSecurityTests {
    @Test func aControllerKeyReadableByGroupOrOthersIsRefused() throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        #expect(throws: Never.self) { try pki.controllerSecurity() }
        let key = "\(pki.directory.path)/controllers/controller.key"
        chmod(key, 0o640)
        #expect { try pki.controllerSecurity() } throws: { error in
            (error as? OwnIdentityError)?.problem == .keyTooOpen(path: key, mode: 0o640) && "\(error)".contains("chmod 600 \(key)")
        }
    }

    @Test func anExpiredControllerCertificateOrAnAgentsIsRefused() throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let controller = try PeerIdentity(role: .controller, name: "controller")
        let past = Date().addingTimeInterval(-10 * 86_400)
        _ = try pki.directory.issue(controller, validity: ValidityPeriod(notBefore: past, notAfter: past.addingTimeInterval(86_400)), force: true)
        #expect { try pki.controllerSecurity() } throws: { error in
            guard case .expired = (error as? OwnIdentityError)?.problem else { return false }
            return "\(error)".contains("expired 9 days ago") && "\(error)".contains("upkeep pki issue controller --force")
        }
        let agent = try pki.agent("node-1")
        #expect { try FleetSecurity.load(caFile: pki.directory.caCertificatePath, certificateFile: agent.certificatePath, keyFile: agent.keyPath) } throws: { error in
            (error as? OwnIdentityError)?.problem == .wrongIdentity(certificate: agent.certificatePath, found: try! PeerIdentity(role: .agent, name: "node-1"))
        }
    }

    @Test func aDenyListThatCannotBeReadStopsTheControllerAndAMissingOneIsEmpty() throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        func load(_ denied: String) throws -> FleetSecurity {
            try FleetSecurity.load(caFile: pki.directory.caCertificatePath, certificateFile: "\(pki.directory.path)/controllers/controller.crt",
                                   keyFile: "\(pki.directory.path)/controllers/controller.key", deniedFile: denied)
        }
        #expect(throws: Never.self) { try load(directory.file("absent.txt")) }
        let broken = try directory.write("# revoked\nAB:CD upkeep://agent/node-1 2026-12-07T00:00:00Z\n", to: "revoked.txt")
        #expect { try load(broken) } throws: { "\($0)".contains("revoked.txt:2: \"AB:CD\" is not a SHA-256 fingerprint") }
    }
}
