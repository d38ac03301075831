import Foundation
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepTestSupport

/// An air-gapped mirror signed by its operator (issue 19): keys, index and signature made with
/// the openssl and sha256sum commands exactly as docs/fleet.md tells an operator to.
private let v3 = "v1.31.4+k3s1"

@Suite(.serialized, .timeLimit(.minutes(1)))
struct MirrorIndexTests {
    /// A mirror directory with two releases, and a key pair of `algorithm` beside it.
    struct SignedMirror {
        let node: AgentNodeFixture
        let mirror: TemporaryDirectory
        let keys: TemporaryDirectory
        let state: TemporaryDirectory
        let ecdsa: Bool

        init(ecdsa: Bool = false) throws {
            node = try AgentNodeFixture(name: "agent-1", liveVersion: v1)
            mirror = try TemporaryDirectory()
            keys = try TemporaryDirectory()
            state = try TemporaryDirectory()
            self.ecdsa = ecdsa
            try node.publish(v1, into: mirror.path)
            try node.publish(v2, into: mirror.path)
            try Self.makeKey(keys.file("mirror.key"), public: keys.file("mirror.pub"), ecdsa: ecdsa)
            try index()
            try sign()
        }

        static func makeKey(_ key: String, public pub: String, ecdsa: Bool) throws {
            let made = ecdsa ? try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
                : try openssl(["genpkey", "-algorithm", "ed25519", "-out", key])
            try #require(made.status == 0, "\(made.error)")
            try #require(try openssl(["pkey", "-in", key, "-pubout", "-out", pub]).status == 0)
        }

        /// `SHA256SUMS` over every file below `k3s-io/`, as docs/fleet.md writes it.
        func index() throws {
            let made = try runProcess("/bin/sh", ["-c", "cd '\(mirror.path)' && find k3s-io -type f -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS"])
            try #require(made.status == 0, "\(made.error)")
        }

        /// `SHA256SUMS.sig` with `key` (default: the mirror's own).
        func sign(with key: String? = nil) throws {
            let key = key ?? keys.file("mirror.key")
            let index = mirror.file("SHA256SUMS"), signature = mirror.file("SHA256SUMS.sig")
            let signed = ecdsa ? try openssl(["dgst", "-sha256", "-sign", key, "-out", signature, index])
                : try openssl(["pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", index, "-out", signature])
            try #require(signed.status == 0, "\(signed.error)")
        }

        func cache() throws -> ArtifactCache {
            try ArtifactCache(stateDirectory: state.path, source: .directory(mirror.path), client: nil,
                              indexKey: try MirrorIndex.TrustedKey(file: keys.file("mirror.pub")))
        }

        func binary(_ version: String) -> String { mirror.file("k3s-io/k3s/releases/download/\(version)/k3s") }
    }

    @Test(arguments: [false, true])
    func aMirrorSignedByTheConfiguredKeyServesItsArtifacts(ecdsa: Bool) async throws {
        let signed = try SignedMirror(ecdsa: ecdsa)
        // The operator's own check, as docs/fleet.md gives it, agrees.
        let pub = signed.keys.file("mirror.pub"), index = signed.mirror.file("SHA256SUMS"), sig = signed.mirror.file("SHA256SUMS.sig")
        let check = ecdsa ? try openssl(["dgst", "-sha256", "-verify", pub, "-signature", sig, index])
            : try openssl(["pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", index, "-sigfile", sig])
        #expect(check.status == 0, "\(check.output)\(check.error)")
        let artifact = try await signed.cache().artifact(version: try K3sVersion(v2), arch: .amd64)
        #expect(artifact.crossCheck == .signedIndex && artifact.vouchedFor.contains("signed mirror index"))
        #expect(FileManager.default.contents(atPath: artifact.path) == FileManager.default.contents(atPath: signed.binary(v2)))
    }

    /// A binary and its checksum file replaced together after the index was signed: the
    /// checksum file no longer matches the index, so nothing is used.
    @Test func aFileChangedAfterSigningIsRefused() async throws {
        let signed = try SignedMirror()
        try signed.node.publish(v2, into: signed.mirror.path, corrupt: true)
        let directory = signed.mirror.file("k3s-io/k3s/releases/download/\(v2)")
        let tampered = try runProcess("/bin/sh", ["-c", "cd '\(directory)' && sha256sum k3s > sha256sum-amd64.txt"])
        try #require(tampered.status == 0)
        let refusedBefore = ArtifactCache.refusals.count(.indexDigest)
        defer { #expect(ArtifactCache.refusals.count(.indexDigest) > refusedBefore, "counted (upkeep_artifact_refusals_total)") }
        await #expect { try await signed.cache().artifact(version: try K3sVersion(v2), arch: .amd64) } throws: { error in
            guard case let .notInMirrorIndex(path, index, listed, actual) = error as? ArtifactError else { return false }
            return path == "k3s-io/k3s/releases/download/\(v2)/sha256sum-amd64.txt" && index.hasSuffix("SHA256SUMS") && listed != nil && listed != actual
                && "\(error)".contains(actual)
        }
    }

    @Test func aReleaseAddedWithoutSigningAgainIsNotInTheIndex() async throws {
        let signed = try SignedMirror()
        try signed.node.publish(v3, into: signed.mirror.path)
        await #expect { try await signed.cache().artifact(version: try K3sVersion(v3), arch: .amd64) } throws: { error in
            if case .notInMirrorIndex(_, _, nil, _) = error as? ArtifactError { true } else { false }
        }
    }

    /// Signed by another key, unsigned, or an index edited after signing: the mirror is refused.
    @Test func aBadOrMissingSignatureRefusesTheMirror() async throws {
        let signed = try SignedMirror()
        func refused(_ reason: String) async throws {
            let refusedBefore = ArtifactCache.refusals.count(.indexSignature)
            defer { #expect(ArtifactCache.refusals.count(.indexSignature) > refusedBefore, "counted (upkeep_artifact_refusals_total)") }
            await #expect { try await signed.cache().artifact(version: try K3sVersion(v1), arch: .amd64) } throws: { error in
                guard case let .mirrorIndexRefused(_, _, keyFile, text) = error as? ArtifactError else { return false }
                return keyFile.hasSuffix("mirror.pub") && text.contains(reason) && "\(error)".contains("releases.indexKey")
            }
        }
        let other = try TemporaryDirectory()
        try SignedMirror.makeKey(other.file("other.key"), public: other.file("other.pub"), ecdsa: false)
        try signed.sign(with: other.file("other.key"))
        try await refused("not one by the configured")

        try signed.sign()
        try "\(String(repeating: "a", count: 64))  k3s-io/k3s/releases/download/\(v3)/k3s\n".appendLine(to: signed.mirror.file("SHA256SUMS"))
        try await refused("not one by the configured")

        try signed.index()
        try FileManager.default.removeItem(atPath: signed.mirror.file("SHA256SUMS.sig"))
        try await refused("not signed")

        try FileManager.default.removeItem(atPath: signed.mirror.file("SHA256SUMS"))
        try await refused("no readable index")
    }

    /// The same mirror served over HTTP: the index and its signature are read from the URL, and
    /// a signature the server does not have (404) refuses the mirror.
    @Test func aMirrorServedOverHTTPIsVerifiedTheSameWay() async throws {
        let signed = try SignedMirror()
        let root = signed.mirror.path
        let files = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .blocking { request in
            guard let data = FileManager.default.contents(atPath: root + request.path) else { return .text("missing\n", status: 404) }
            return HTTPServerResponse(status: 200, body: Array(data))
        })
        let state = try TemporaryDirectory()
        let served = try ArtifactCache(stateDirectory: state.path, source: .http(try HTTPURL("http://127.0.0.1:\(files.port)")),
                                       client: try ArtifactCache.makeHTTPClient(artifactBytesMax: 1 << 20),
                                       indexKey: try MirrorIndex.TrustedKey(file: signed.keys.file("mirror.pub")))
        #expect(try await served.artifact(version: try K3sVersion(v1), arch: .amd64).crossCheck == .signedIndex)
        try FileManager.default.removeItem(atPath: signed.mirror.file("SHA256SUMS.sig"))
        // Another release, so the index is read again (what is cached stays verified).
        await #expect { try await served.artifact(version: try K3sVersion(v2), arch: .amd64) } throws: { error in
            guard case let .mirrorIndexRefused(_, signature, _, reason) = error as? ArtifactError else { return false }
            return signature.hasSuffix("/SHA256SUMS.sig") && reason.contains("not signed")
        }
        await files.close()
    }

    @Test func onlyEd25519AndP256PublicKeysAreAccepted() throws {
        let keys = try TemporaryDirectory()
        #expect(try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keys.file("rsa.key")]).status == 0)
        #expect(try openssl(["pkey", "-in", keys.file("rsa.key"), "-pubout", "-out", keys.file("rsa.pub")]).status == 0)
        #expect(throws: PKIError.noPublicKey(source: keys.file("rsa.pub"))) { try PublicKey(pemFile: keys.file("rsa.pub")) }
        // A private key where the public half belongs is not read as one.
        try SignedMirror.makeKey(keys.file("ed.key"), public: keys.file("ed.pub"), ecdsa: false)
        #expect(throws: PKIError.noPublicKey(source: keys.file("ed.key"))) { try PublicKey(pemFile: keys.file("ed.key")) }
        #expect(try PublicKey(pemFile: keys.file("ed.pub")).keyType == .ed25519)
    }
}

private extension String {
    func appendLine(to path: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(utf8))
        try handle.close()
    }
}
