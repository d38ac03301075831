import Foundation
import UpkeepFleet
import UpkeepPKI

/// Every certificate the controller can see, with when it expires and when it is due for
/// renewal: the CA, the controller identities and the agent identities of a PKI directory,
/// and the files `upkeep.yaml` names. Read for `upkeep pki status` and the expiry metrics;
/// it never opens a private key.
struct PKIInventory: Equatable {
    struct Entry: Equatable, Encodable {
        /// `upkeep://agent/node-1`, `upkeep://controller/controller` or `cluster CA`.
        var identity: String
        var file: String
        var notBefore: Date?
        var notAfter: Date?
        /// Two thirds of the lifetime: the point agents renew at (docs/pki.md, "Renewal").
        var renewAfter: Date?
        /// Why the file could not be read as a certificate; nil when it could.
        var problem: String?
        /// On the deny list (`upkeep pki revoke`): no longer renewed nor counted for expiry.
        var revoked = false
    }

    var entries: [Entry]


    /// `directory`'s certificates (ca.crt, controllers/*.crt, agents/*.crt, operators/*.crt) and its deny list
    /// (revoked.txt); without one, the directory of `config`'s CA file, the CA and controller
    /// files `config` names, and its deny list. A deny list that cannot be read is an error.
    static func read(directory: String?, config: ControllerConfig) throws -> PKIInventory {
        var files: [String] = []
        let root = directory ?? (config.pki.ca as NSString).deletingLastPathComponent
        files.append("\(root)/ca.crt")
        for folder in ["controllers", "agents", "operators"] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(folder)")) ?? []
            files += names.filter { $0.hasSuffix(".crt") }.sorted().map { "\(root)/\(folder)/\($0)" }
        }
        if directory == nil { files += [config.pki.ca, config.pki.certificate] }
        let denied = try CertificateDenyList.load(path: directory.map { "\($0)/revoked.txt" } ?? config.pki.revokedFile)
        var seen: Set<String> = []
        var entries: [Entry] = []
        for file in files {
            let resolved = (file as NSString).standardizingPath
            guard FileManager.default.fileExists(atPath: resolved), seen.insert(resolved).inserted else { continue }
            entries.append(entry(file: resolved, denied: denied))
        }
        return PKIInventory(entries: entries)
    }

    static func entry(file: String, denied: CertificateDenyList) -> Entry {
        let certificate: Certificate
        do {
            guard let first = try Certificate.loadChain(pemFile: file).first else { throw PKIError.noCertificate(source: file) }
            certificate = first
        } catch {
            return Entry(identity: "?", file: file, problem: "\(error)")
        }
        let identity = (try? PeerIdentity.from(certificate).uri) ?? (certificate.isCA ? "cluster CA" : certificate.subject)
        return Entry(identity: identity, file: file, notBefore: certificate.notBefore, notAfter: certificate.notAfter,
                     renewAfter: CertificateRenewal.renewalPoint(of: certificate), revoked: denied.contains(certificate))
    }
}
