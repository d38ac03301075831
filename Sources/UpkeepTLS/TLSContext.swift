import COpenSSL
import COpenSSLShims
import NIOCore
import UpkeepPKI

/// Where a public-mode client finds the CAs it trusts.
public enum TrustRoots: Sendable {
    /// The distribution's trust store (`/etc/ssl/certs`), as OpenSSL is configured.
    case system
    /// Exactly these CAs (a kubeconfig's `certificate-authority-data`, a private mirror's CA).
    case certificates([Certificate])
}

/// What a handler demands of the peer's certificate beyond a verified chain.
public enum PeerExpectation: Sendable, Equatable {
    /// Whatever the context verifies (public server, optional client certificates).
    case any
    /// Internal mode: the peer must carry an Upkeep identity with one of these roles.
    case roles(Set<PeerRole>)
    /// Internal mode: the peer must be exactly this identity (the controller dialling node X).
    case identity(PeerIdentity)
    /// Public client: the certificate must be valid for this DNS name or IP address; DNS names
    /// are also sent as SNI.
    case host(String)
}

/// An immutable OpenSSL `SSL_CTX` and the mode it was built for.
///
/// Build one per configuration and share it across connections and event loops; each
/// connection gets its own `TLSHandler` from `makeServerHandler` / `makeClientHandler`.
/// A context never consults the system trust store unless built with `TrustRoots.system`.
public final class TLSContext: @unchecked Sendable {
    enum Mode: Sendable, Equatable {
        case `internal`
        case publicClient
        case publicServer(requireClientCertificate: Bool)
    }

    let pointer: OpaquePointer
    let mode: Mode
    /// Peer certificates refused although their chain verifies (internal mode only).
    private(set) var denied = CertificateDenyList.empty

    private init(pointer: OpaquePointer, mode: Mode) {
        self.pointer = pointer
        self.mode = mode
    }

    deinit { SSL_CTX_free(pointer) }

    /// Agent ⇄ controller: TLS 1.3 only, a certificate required from both sides, chains
    /// verified against `ca` only (never the system store), and a peer certificate in `denied`
    /// refused in the handshake (`CertificateRefusal.revoked`).
    public static func `internal`(ca: [Certificate], chain: [Certificate], key: PrivateKey,
                                  denied: CertificateDenyList = .empty) throws -> TLSContext {
        guard !ca.isEmpty else { throw TLSError.invalidConfiguration("no cluster CA certificate given") }
        let context = try TLSContext(mode: .internal, minimumVersion: upkeep_TLS1_3_VERSION())
        context.denied = denied
        try context.use(chain: chain, key: key)
        try context.trust(ca)
        SSL_CTX_set_verify(context.pointer, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, upkeepVerifyCallback)
        return context
    }

    /// HTTPS client: TLS 1.2 or newer, `trust` as the CAs, an optional client certificate
    /// (the Kubernetes API's client-certificate authentication).
    public static func publicClient(trust: TrustRoots, clientChain: [Certificate]? = nil, clientKey: PrivateKey? = nil) throws -> TLSContext {
        let context = try TLSContext(mode: .publicClient, minimumVersion: upkeep_TLS1_2_VERSION())
        switch trust {
        case .system:
            guard SSL_CTX_set_default_verify_paths(context.pointer) == 1 else {
                throw TLSError.openSSL(.capture("SSL_CTX_set_default_verify_paths"))
            }
        case let .certificates(cas):
            guard !cas.isEmpty else { throw TLSError.invalidConfiguration("an empty list of trusted CAs trusts nothing") }
            try context.trust(cas)
        }
        switch (clientChain, clientKey) {
        case let (chain?, key?): try context.use(chain: chain, key: key)
        case (nil, nil): break
        default: throw TLSError.invalidConfiguration("a client certificate needs its key, and a key its certificate")
        }
        SSL_CTX_set_verify(context.pointer, SSL_VERIFY_PEER, upkeepVerifyCallback)
        return context
    }

    /// HTTPS client that verifies nothing: only for reading public data whose integrity is
    /// checked another way. A joining node fetches the cluster CA with it and compares the CA's
    /// hash with the one the operator gave (`CAHash`) before it trusts that CA or sends a secret.
    public static func discoveryClient() throws -> TLSContext {
        let context = try TLSContext(mode: .publicClient, minimumVersion: upkeep_TLS1_2_VERSION())
        SSL_CTX_set_verify(context.pointer, SSL_VERIFY_NONE, nil)
        return context
    }

    /// HTTPS server (the simulated Kubernetes API serving 6443 as k3s does): TLS 1.2 or newer;
    /// client certificates verified against `clientCA` when given, and required when
    /// `requireClientCertificate`.
    public static func publicServer(chain: [Certificate], key: PrivateKey, clientCA: [Certificate]? = nil,
                                    requireClientCertificate: Bool = false) throws -> TLSContext {
        if requireClientCertificate, clientCA?.isEmpty ?? true {
            throw TLSError.invalidConfiguration("requiring client certificates needs a client CA")
        }
        let context = try TLSContext(mode: .publicServer(requireClientCertificate: requireClientCertificate),
                                     minimumVersion: upkeep_TLS1_2_VERSION())
        try context.use(chain: chain, key: key)
        if let clientCA, !clientCA.isEmpty {
            try context.trust(clientCA)
            var flags = SSL_VERIFY_PEER
            if requireClientCertificate { flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
            SSL_CTX_set_verify(context.pointer, flags, upkeepVerifyCallback)
        } else {
            SSL_CTX_set_verify(context.pointer, SSL_VERIFY_NONE, nil)
        }
        return context
    }

    /// A handler for one accepted connection.
    public func makeServerHandler(expecting expectation: PeerExpectation = .any,
                                  handshakeTimeout: TimeAmount = .seconds(10)) -> TLSHandler {
        TLSHandler(context: self, role: .server, expectation: expectation, serverName: nil, handshakeTimeout: handshakeTimeout)
    }

    /// A handler for one outgoing connection. In public mode `expecting` should be `.host(name)`;
    /// in internal mode `.identity(…)` (or `.roles([.controller])` for an agent dialling out).
    public func makeClientHandler(expecting expectation: PeerExpectation, serverName: String? = nil,
                                  handshakeTimeout: TimeAmount = .seconds(10)) -> TLSHandler {
        TLSHandler(context: self, role: .client, expectation: expectation, serverName: serverName, handshakeTimeout: handshakeTimeout)
    }

    // MARK: - Construction helpers

    private convenience init(mode: Mode, minimumVersion: Int32) throws {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_method()) else { throw TLSError.openSSL(.capture("SSL_CTX_new")) }
        self.init(pointer: ctx, mode: mode)
        guard upkeep_SSL_CTX_set_min_proto_version(ctx, minimumVersion) == 1 else {
            throw TLSError.openSSL(.capture("SSL_CTX_set_min_proto_version"))
        }
        let options = upkeep_SSL_OP_NO_COMPRESSION() | upkeep_SSL_OP_NO_RENEGOTIATION() | upkeep_SSL_OP_NO_TICKET()
        _ = SSL_CTX_set_options(ctx, options)
        _ = upkeep_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        // Every connection is a full handshake: no session state to leak between peers. TLS 1.3
        // sends two NewSessionTickets after the handshake unless told none (SSL_OP_NO_TICKET only
        // makes them stateful): https://docs.openssl.org/3.0/man3/SSL_CTX_set_num_tickets/
        _ = upkeep_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
        guard SSL_CTX_set_num_tickets(ctx, 0) == 1 else { throw TLSError.openSSL(.capture("SSL_CTX_set_num_tickets")) }
    }

    private func use(chain: [Certificate], key: PrivateKey) throws {
        guard let leaf = chain.first else { throw TLSError.invalidConfiguration("no certificate given") }
        guard SSL_CTX_use_certificate(pointer, leaf.pointer) == 1 else {
            throw TLSError.openSSL(.capture("SSL_CTX_use_certificate"))
        }
        for intermediate in chain.dropFirst() where upkeep_SSL_CTX_add1_chain_cert(pointer, intermediate.pointer) != 1 {
            throw TLSError.openSSL(.capture("SSL_CTX_add1_chain_cert"))
        }
        guard SSL_CTX_use_PrivateKey(pointer, key.pointer) == 1 else {
            throw TLSError.openSSL(.capture("SSL_CTX_use_PrivateKey"))
        }
        guard SSL_CTX_check_private_key(pointer) == 1 else {
            ERR_clear_error()
            throw TLSError.invalidConfiguration("the private key does not match the certificate \(leaf.subject)")
        }
    }

    private func trust(_ cas: [Certificate]) throws {
        guard let store = X509_STORE_new() else { throw TLSError.openSSL(.capture("X509_STORE_new")) }
        for ca in cas where X509_STORE_add_cert(store, ca.pointer) != 1 {
            X509_STORE_free(store)
            throw TLSError.openSSL(.capture("X509_STORE_add_cert"))
        }
        SSL_CTX_set_cert_store(pointer, store)  // the context owns the store now
    }
}
