#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import UpkeepCore

/// The files of a cluster's PKI, on disk:
///
///     DIR/ca.crt                     CA certificate (0644)
///     DIR/ca.key                     CA private key (0600)
///     DIR/agents/<node>.crt|.key     agent identities
///     DIR/controllers/<name>.crt|.key  controller identities (default name "controller")
///
/// DIR and its subdirectories are created with mode 0700, keys with 0600 (created that way,
/// never chmod-ed afterwards), certificates with 0644. Nothing is ever overwritten unless
/// `force` is passed; then new files are written beside the old ones and renamed over them,
/// so a crash leaves either the old or the new file, never half of one. A CA key readable by
/// group or others is refused. Every operator-caused failure is a `PKIDirectoryError`.
public struct PKIDirectory: Sendable {
    /// DIR.
    public let path: String

    public static let defaultControllerName = "controller"
    public static let caCommonName = "upkeep cluster CA"
    public static let defaultCADays = 3650
    public static let defaultIdentityDays = 365
    /// Issued certificates start this much before "now", for peers whose clocks run behind.
    public static let clockSkewSeconds: TimeInterval = 300

    public init(path: String) {
        self.path = path
    }

    public var caCertificatePath: String { "\(path)/ca.crt" }
    public var caKeyPath: String { "\(path)/ca.key" }

    /// DIR/agents, DIR/controllers or DIR/operators.
    public func directory(for role: PeerRole) -> String {
        switch role {
        case .agent: "\(path)/agents"
        case .controller: "\(path)/controllers"
        case .operator: "\(path)/operators"
        }
    }

    public func certificatePath(for identity: PeerIdentity) -> String {
        "\(directory(for: identity.role))/\(Self.fileStem(identity.name)).crt"
    }

    public func keyPath(for identity: PeerIdentity) -> String {
        "\(directory(for: identity.role))/\(Self.fileStem(identity.name)).key"
    }

    /// The longest name kept whole in a file name: with `.crt` and a staging file's
    /// `.NAME.crt.tmp-<16 hex>` it stays within a file name's 255 bytes (NAME_MAX).
    public static let fileStemBytesMax = 200

    /// A file name for `name`: the name itself, or for a longer one (a node name may have 253
    /// characters) its first 183 characters, `-` and 16 hex digits of its SHA-256, so two long
    /// names never share a file.
    public static func fileStem(_ name: String) -> String {
        guard name.utf8.count > fileStemBytesMax else { return name }
        return "\(name.prefix(183))-\(SHA256.hex(Array(name.utf8)).prefix(16))"
    }

    /// Creates DIR (if needed) with a new CA key and self-signed certificate.
    @discardableResult
    public func initialize(keyType: KeyType = .ecdsaP256, validity: ValidityPeriod, force: Bool = false) throws -> CertificateAuthority {
        if !force {
            for file in [caKeyPath, caCertificatePath] where permissionBits(file) != nil {
                throw PKIDirectoryError.caExists(directory: path, file: PathName.base(file))
            }
        }
        let authority = try CertificateAuthority.create(commonName: PKIDirectory.caCommonName,
                                                        keyType: keyType, validity: validity)
        try writing {
            try makePrivateDirectory(path)
            let key = try StagedFile.stage(Array(authority.key.pkcs8PEM().utf8), to: caKeyPath, mode: 0o600)
            let certificate = try StagedFile.stage(Array(authority.certificate.pem().utf8), to: caCertificatePath, mode: 0o644)
            try StagedFile.publish([key, certificate], replacing: force)
        }
        return authority
    }

    /// Loads the CA, refusing a missing CA, a CA key readable by group or others, or a key that
    /// does not belong to the certificate.
    public func loadCA() throws -> CertificateAuthority {
        guard let mode = permissionBits(caKeyPath), permissionBits(caCertificatePath) != nil else {
            throw PKIDirectoryError.caMissing(directory: path)
        }
        guard mode & 0o077 == 0 else { throw PKIDirectoryError.caKeyTooOpen(path: caKeyPath, mode: UInt32(mode)) }
        let certificate = try Certificate.loadChain(pemFile: caCertificatePath)[0]
        return try CertificateAuthority(certificate: certificate, key: PrivateKey(pemFile: caKeyPath))
    }

    /// Issues an identity with the directory's CA and writes its key and certificate.
    ///
    /// `keyType` nil means the CA's own key type. The certificate may not outlive the CA.
    @discardableResult
    public func issue(_ identity: PeerIdentity, keyType: KeyType? = nil, validity: ValidityPeriod,
                      dnsNames: [String] = [], ipAddresses: [String] = [], force: Bool = false) throws -> IssuedIdentity {
        let authority = try loadCA()
        let certificatePath = certificatePath(for: identity)
        let keyPath = keyPath(for: identity)
        if !force {
            for file in [keyPath, certificatePath] where permissionBits(file) != nil {
                throw PKIDirectoryError.identityExists(directory: path, file: relative(file), identity: identity)
            }
        }
        let caNotAfter = authority.certificate.notAfter
        guard validity.notAfter <= caNotAfter else {
            let days = Int(caNotAfter.timeIntervalSince(validity.notBefore) / 86_400)
            throw PKIDirectoryError.certificateOutlivesCA(caNotAfter: caNotAfter, daysMax: max(days, 0))
        }
        let issued = try authority.issue(identity: identity, keyType: keyType ?? authority.key.keyType ?? .ecdsaP256,
                                         validity: validity, dnsNames: dnsNames, ipAddresses: ipAddresses)
        try writing {
            try makePrivateDirectory(path)
            try makePrivateDirectory(directory(for: identity.role))
            let key = try StagedFile.stage(Array(issued.key.pkcs8PEM().utf8), to: keyPath, mode: 0o600)
            let certificate = try StagedFile.stage(Array(issued.certificate.pem().utf8), to: certificatePath, mode: 0o644)
            try StagedFile.publish([key, certificate], replacing: force)
        }
        return IssuedIdentity(identity: identity, certificate: issued.certificate, key: issued.key,
                              certificatePath: certificatePath, keyPath: keyPath)
    }

    /// The key and certificate issued earlier for `identity`.
    public func loadIdentity(_ identity: PeerIdentity) throws -> (certificate: Certificate, key: PrivateKey) {
        let certificate = try Certificate.loadChain(pemFile: certificatePath(for: identity))[0]
        let key = try PrivateKey(pemFile: keyPath(for: identity))
        guard certificate.matches(key) else {
            throw PKIError.keyDoesNotMatchCertificate(certificate: certificatePath(for: identity))
        }
        return (certificate, key)
    }

    /// Makes DIR/agents or DIR/controllers (0700) if missing and checks that this process can
    /// write there: a service that records certificates (the join server) calls it at start, so
    /// a read-only directory is told at once, not at the first join.
    public func prepareCopies(for role: PeerRole) throws {
        let directory = directory(for: role)
        try writing {
            try makePrivateDirectory(directory)
            guard access(directory, W_OK) == 0 else { throw FileSystemFailure.current(path: directory, operation: "write in") }
        }
    }

    /// Stages the controller's copy of a certificate signed for a key it never saw (an enrolled
    /// or renewed node's): DIR/<role>/<name>.crt, which `pki status`, `pki revoke` and `pki renew`
    /// read. Staging proves the directory writable before anything is promised to the node;
    /// `CertificateCopy.publish()` then puts it in place.
    public func stageCopy(of certificate: Certificate, for identity: PeerIdentity) throws -> CertificateCopy {
        var staged: StagedFile?
        try writing {
            try makePrivateDirectory(directory(for: identity.role))
            staged = try StagedFile.stage(Array(try certificate.pem().utf8), to: certificatePath(for: identity), mode: 0o644)
        }
        return CertificateCopy(directory: self, staged: staged!, certificate: certificate, keyPath: keyPath(for: identity))
    }

    /// A validity of `days` starting now, backdated by `clockSkewSeconds`.
    public static func validity(days: Int, now: Date = Date()) -> ValidityPeriod {
        ValidityPeriod.days(days, from: now).startingEarlier(bySeconds: clockSkewSeconds)
    }

    private func relative(_ file: String) -> String {
        file.hasPrefix(path + "/") ? String(file.dropFirst(path.count + 1)) : file
    }

    /// Runs file-system steps, turning their failures into `PKIDirectoryError`.
    fileprivate func writing(_ steps: () throws -> Void) throws {
        do {
            try steps()
        } catch let failure as FileSystemFailure where failure.code == EEXIST && failure.operation == "link" {
            // Someone created the file between our check and our publication.
            throw PKIDirectoryError.fileAppeared(path: failure.path)
        } catch let failure as FileSystemFailure {
            throw PKIDirectoryError.fileSystem(path: failure.path, operation: failure.operation, reason: failure.reason)
        }
    }
}

/// A certificate copy staged in a PKI directory (`PKIDirectory.stageCopy`), to publish once the
/// certificate is truly given out, or to discard.
public struct CertificateCopy: Sendable {
    fileprivate let directory: PKIDirectory
    fileprivate let staged: StagedFile
    public let certificate: Certificate
    fileprivate let keyPath: String

    public var path: String { staged.target }

    /// Replaces the certificate file in one step. A key copy beside it that no longer matches
    /// (from an earlier `pki issue`) is removed: the node's own key is the one that counts.
    public func publish() throws {
        try directory.writing { try StagedFile.publish([staged], replacing: true) }
        if let copy = try? PrivateKey(pemFile: keyPath), !certificate.matches(copy) { unlink(keyPath) }
    }

    /// Removes the staged file; the certificate file stays as it was.
    public func discard() {
        unlink(staged.temporary)
    }
}

/// A freshly issued identity and where its files were written.
public struct IssuedIdentity: Sendable {
    public let identity: PeerIdentity
    public let certificate: Certificate
    public let key: PrivateKey
    public let certificatePath: String
    public let keyPath: String
}

/// What an operator can get wrong with a PKI directory; each description says what to do.
public enum PKIDirectoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `file` (ca.key or ca.crt) exists and `force` was not given.
    case caExists(directory: String, file: String)
    /// The identity's key or certificate (`file`, relative to the directory) exists and `force` was not given.
    case identityExists(directory: String, file: String, identity: PeerIdentity)
    /// A file appeared while we were writing; nothing was changed.
    case fileAppeared(path: String)
    /// The directory has no ca.crt/ca.key.
    case caMissing(directory: String)
    /// ca.key is accessible to group or others (`mode` is its permission bits).
    case caKeyTooOpen(path: String, mode: UInt32)
    /// The requested certificate would still be valid after the CA expires.
    case certificateOutlivesCA(caNotAfter: Date, daysMax: Int)
    /// A system call failed.
    case fileSystem(path: String, operation: String, reason: String)

    public var description: String {
        switch self {
        case let .caExists(directory, file):
            return "\(file) already exists in \(directory); pass --force to replace it "
                + "(every issued certificate would then need reissuing)"
        case let .identityExists(directory, file, identity):
            return "\(file) already exists in \(directory); pass --force to replace it "
                + "(then install the new key and certificate for \(identity.role.rawValue) \(identity.name))"
        case let .fileAppeared(path):
            return "\(path) was created by someone else while upkeep was writing it; nothing was changed, check who else manages this directory and retry"
        case let .caMissing(directory):
            return "\(directory) holds no CA (ca.crt and ca.key); run 'upkeep pki init --dir \(directory)' first"
        case let .caKeyTooOpen(path, mode):
            return "\(path) is accessible by group or others (mode \(String(mode, radix: 8))); "
                + "run 'chmod 600 \(path)', and consider the CA compromised if others could read it"
        case let .certificateOutlivesCA(caNotAfter, daysMax):
            return "the certificate would outlive the CA, which expires \(caNotAfter.formatted(.iso8601)); "
                + "ask for at most \(daysMax) days, or rotate the CA (see docs/pki.md)"
        case let .fileSystem(path, operation, reason):
            return "cannot \(operation) \(path): \(reason)"
        }
    }
}
