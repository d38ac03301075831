#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A process's own TLS identity: the cluster CA it trusts, its certificate chain and its key,
/// read and checked before the agent serves or the controller dials (docs/pki.md, "Checks at
/// start").
///
/// `load` refuses, with an `OwnIdentityError` that names the file and the remedy, a CA file that
/// group or others may write or that holds a private key, a key that is missing or readable by
/// group or others, a certificate that has expired or is not yet valid,
/// one that names another role or holder, one whose key is not the key given, and one the
/// cluster CA did not sign. It never logs or prints key material.
public struct OwnIdentity: Sendable {
    public let ca: [Certificate]
    public let chain: [Certificate]
    public let key: PrivateKey
    public let identity: PeerIdentity

    /// The leaf certificate (the first of `chain`).
    public var certificate: Certificate { chain[0] }

    /// Reads and checks the three files. `name` nil accepts any holder of `role` (the
    /// controller's name is free); `now` is the clock's reading, an argument for tests.
    public static func load(caFile: String, certificateFile: String, keyFile: String,
                            role: PeerRole, name: String? = nil, now: Date) throws -> OwnIdentity {
        func failure(_ problem: OwnIdentityError.Problem) -> OwnIdentityError {
            OwnIdentityError(problem: problem, role: role, name: name)
        }
        var status = stat()
        guard stat(keyFile, &status) == 0 else {
            throw failure(.keyMissing(path: keyFile))
        }
        let mode = UInt32(status.st_mode) & 0o777
        guard mode & 0o077 == 0 else { throw failure(.keyTooOpen(path: keyFile, mode: mode)) }

        // The CA file says whom this process trusts: one that others may write lets them add a
        // CA of their own, and one that holds a key puts a secret where a public file belongs.
        if stat(caFile, &status) == 0, UInt32(status.st_mode) & 0o022 != 0 {
            throw failure(.caWritable(path: caFile, mode: UInt32(status.st_mode) & 0o777))
        }
        if try PEMFile.contents(caFile).contains("PRIVATE KEY-----") { throw failure(.caHoldsKey(path: caFile)) }
        let ca = try Certificate.loadChain(pemFile: caFile)
        let chain = try Certificate.loadChain(pemFile: certificateFile)
        guard let leaf = chain.first else { throw PKIError.noCertificate(source: certificateFile) }
        let key = try PrivateKey(pemFile: keyFile)

        let identity: PeerIdentity
        do { identity = try PeerIdentity.from(leaf) } catch {
            throw failure(.notAnIdentity(certificate: certificateFile, reason: "\(error)"))
        }
        guard identity.role == role, name.map({ $0 == identity.name }) ?? true else {
            throw failure(.wrongIdentity(certificate: certificateFile, found: identity))
        }
        if now < leaf.notBefore { throw failure(.notYetValid(certificate: certificateFile, notBefore: leaf.notBefore, now: now)) }
        if now >= leaf.notAfter { throw failure(.expired(certificate: certificateFile, notAfter: leaf.notAfter, now: now)) }
        guard leaf.matches(key) else { throw failure(.keyMismatch(certificate: certificateFile, key: keyFile)) }
        guard ca.contains(where: { leaf.isSigned(by: $0) }) else {
            throw failure(.notIssuedByCA(certificate: certificateFile, ca: caFile))
        }
        return OwnIdentity(ca: ca, chain: chain, key: key, identity: identity)
    }
}

/// Why a process refuses to run with its own identity files: each case names the file, and the
/// description says how to get a good one.
public struct OwnIdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        case keyMissing(path: String)
        /// The key's permission bits let group or others read or write it.
        case keyTooOpen(path: String, mode: UInt32)
        case notAnIdentity(certificate: String, reason: String)
        /// The certificate names another role or holder than this process.
        case wrongIdentity(certificate: String, found: PeerIdentity)
        case expired(certificate: String, notAfter: Date, now: Date)
        case notYetValid(certificate: String, notBefore: Date, now: Date)
        /// The key is not the certificate's key.
        case keyMismatch(certificate: String, key: String)
        /// No certificate of the trusted CA file signed it.
        case notIssuedByCA(certificate: String, ca: String)
        /// The trusted CA file may be written by group or others.
        case caWritable(path: String, mode: UInt32)
        /// The trusted CA file holds a private key as well as certificates.
        case caHoldsKey(path: String)
    }

    public let problem: Problem
    /// Who this process is: its role and, for an agent, its node.
    public let role: PeerRole
    public let name: String?

    public init(problem: Problem, role: PeerRole, name: String?) {
        self.problem = problem
        self.role = role
        self.name = name
    }

    /// What this process should be, e.g. `upkeep://agent/node-1` or "a controller".
    var expected: String {
        if let name, let identity = try? PeerIdentity(role: role, name: name) { return identity.uri }
        return "a \(role.rawValue) identity"
    }

    /// The command that issues a fresh identity for this process.
    var remedy: String {
        switch role {
        case .agent: "issue a new one with `upkeep pki issue agent \(name ?? "NODE") --force` and install its .crt and .key (mode 0600) on this node"
        case .controller: "issue a new one with `upkeep pki issue controller --force` and point pki in upkeep.yaml at it"
        case .operator: "issue a new one with `upkeep pki issue operator \(name ?? "NAME") --force`"
        }
    }

    public var description: String {
        switch problem {
        case let .keyMissing(path):
            return "the private key \(path) does not exist; \(remedy)"
        case let .keyTooOpen(path, mode):
            return "the private key \(path) is readable by group or others (mode \(String(mode, radix: 8))); run `chmod 600 \(path)`, "
                + "and treat the key as compromised if someone else could have read it"
        case let .notAnIdentity(certificate, reason):
            return "\(certificate) is not an Upkeep identity certificate (\(reason)); \(remedy)"
        case let .wrongIdentity(certificate, found):
            return "\(certificate) is for \(found), but this process is \(expected); \(remedy)"
        case let .expired(certificate, notAfter, now):
            return "\(certificate) \(CertificateSummary.validity(notBefore: notAfter, notAfter: notAfter, now: now)) "
                + "(not after \(notAfter.formatted(.iso8601))); \(remedy)"
        case let .notYetValid(certificate, notBefore, now):
            return "\(certificate) is \(CertificateSummary.validity(notBefore: notBefore, notAfter: notBefore, now: now)) "
                + "(not before \(notBefore.formatted(.iso8601))); check this machine's clock, or \(remedy)"
        case let .keyMismatch(certificate, key):
            return "the private key \(key) does not belong to \(certificate); use the key issued with it, or \(remedy)"
        case let .notIssuedByCA(certificate, ca):
            return "\(certificate) was not issued by the CA in \(ca); use the cluster CA that issued it, or \(remedy)"
        case let .caWritable(path, mode):
            return "the CA file \(path) is writable by group or others (mode \(String(mode, radix: 8))), who could make this process "
                + "trust a CA of their own; run `chmod 644 \(path)` (owned by root)"
        case let .caHoldsKey(path):
            return "the CA file \(path) holds a private key; it must hold the cluster CA's certificate only "
                + "(`openssl x509 -in \(path) -out ca.crt` keeps the certificate); if it is the CA's key, treat it as compromised"
        }
    }
}
