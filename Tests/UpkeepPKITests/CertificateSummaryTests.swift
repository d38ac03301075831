import Foundation
import Testing
@testable import UpkeepPKI

@Suite struct CertificateSummaryTests {
    private let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func validityIsDescribedRelativeToNow() {
        let day: TimeInterval = 86_400
        #expect(CertificateSummary.validity(notBefore: now - day, notAfter: now + 364.5 * day, now: now) == "valid for 364 days")
        #expect(CertificateSummary.validity(notBefore: now - day, notAfter: now + 1 * day, now: now) == "valid for 1 day")
        #expect(CertificateSummary.validity(notBefore: now - day, notAfter: now + 7_200, now: now) == "valid for 2 hours")
        #expect(CertificateSummary.validity(notBefore: now - 9 * day, notAfter: now - 3 * day, now: now) == "expired 3 days ago")
        #expect(CertificateSummary.validity(notBefore: now - day, notAfter: now, now: now) == "expired 0 minutes ago")
        #expect(CertificateSummary.validity(notBefore: now + 2 * day, notAfter: now + 9 * day, now: now)
            == "not yet valid (starts in 2 days)")
    }

    @Test func agentCertificateShowsRoleNodeAndAllNames() throws {
        let ca = try CertificateAuthority.create(commonName: "Summary CA", keyType: .ed25519, validity: .days(30, from: now))
        let agent = try ca.issue(identity: PeerIdentity(role: .agent, name: "node-1"), keyType: .ed25519,
                                 validity: .days(10, from: now), dnsNames: ["node-1.lan"], ipAddresses: ["10.1.2.3"])
        let summary = CertificateSummary(agent.certificate, now: now + 86_400)
        let rows = Dictionary(uniqueKeysWithValues: summary.fields.map { ($0.label, $0.value) })
        #expect(summary.fields.map(\.label) == ["Subject", "Issuer", "Role", "Node", "SANs", "Not before", "Not after",
                                                "Validity", "Serial", "SHA-256", "CA"])
        #expect(rows["Subject"] == "CN=node-1")
        #expect(rows["Issuer"] == "CN=Summary CA")
        #expect(rows["Role"] == "agent")
        #expect(rows["Node"] == "node-1")
        #expect(rows["SANs"] == "URI:upkeep://agent/node-1, DNS:node-1.lan, IP Address:10.1.2.3")
        #expect(rows["Not before"] == "2027-01-15T08:00:00Z")
        #expect(rows["Validity"] == "valid for 9 days")
        #expect(rows["SHA-256"] == agent.certificate.sha256Fingerprint)
        #expect(rows["CA"] == "no")
        #expect(summary.text.contains("Node:       node-1\n"))

        let caRows = Dictionary(uniqueKeysWithValues: CertificateSummary(ca.certificate, now: now).fields.map { ($0.label, $0.value) })
        #expect(caRows["Role"] == "none (CA certificate)")
        #expect(caRows["CA"] == "yes")
        #expect(caRows["SANs"] == "none")
    }

    @Test func controllerCertificateShowsItsName() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", keyType: .ecdsaP256, validity: .days(30, from: now))
        let controller = try ca.issue(identity: PeerIdentity(role: .controller, name: "controller"), keyType: .ecdsaP256,
                                      validity: .days(10, from: now))
        let labels = CertificateSummary(controller.certificate, now: now).fields.map(\.label)
        #expect(labels.contains("Name") && !labels.contains("Node"))
    }
}
