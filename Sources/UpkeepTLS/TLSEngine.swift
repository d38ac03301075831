import COpenSSL
import COpenSSLShims
import NIOCore
import UpkeepPKI

/// One OpenSSL `SSL` object over an in-memory ciphertext BIO: ciphertext in, plaintext out,
/// and back.
///
/// It never touches a socket: `TLSHandler` feeds it what the network delivered and sends what
/// it produced. Not thread-safe; confined to its channel's event loop.
final class TLSEngine {
    enum Role { case client, server }

    enum HandshakeResult {
        case complete
        case wantRead
        case failed(TLSError)
    }

    enum ReadResult {
        /// Plaintext was appended; call again, more may be buffered.
        case data
        /// Nothing more until more ciphertext arrives.
        case wantRead
        /// The peer sent close_notify.
        case closeNotify
        case failed(TLSError)
    }

    /// Most plaintext appended by one `read` call before returning to the caller.
    static let readChunkBytesMax = 64 * 1024

    private let ssl: OpaquePointer
    private let buffers: CiphertextBuffers
    let verifier: PeerVerifier

    init(context: TLSContext, role: Role, expectation: PeerExpectation, serverName: String?,
         allocator: ByteBufferAllocator) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else { throw TLSError.openSSL(.capture("SSL_new")) }
        guard let bio = BIO_new(ciphertextBIOMethod) else {
            SSL_free(ssl)
            throw TLSError.openSSL(.capture("BIO_new"))
        }
        let buffers = CiphertextBuffers(allocator: allocator)
        BIO_set_data(bio, Unmanaged.passUnretained(buffers).toOpaque())
        SSL_set_bio(ssl, bio, bio)  // the SSL owns the BIO; `buffers` outlives it (see deinit)
        self.ssl = ssl
        self.buffers = buffers
        self.verifier = PeerVerifier(expectation: expectation, denied: context.denied)
        SSL_set_ex_data(ssl, peerVerifierIndex, Unmanaged.passUnretained(verifier).toOpaque())

        switch role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if case let .host(host) = expectation { try verifyHost(host) }
            if let sni = serverName ?? Self.sniName(for: expectation),
               upkeep_SSL_set_tlsext_host_name(ssl, sni) != 1 {
                throw TLSError.openSSL(.capture("SSL_set_tlsext_host_name"))
            }
        }
    }

    deinit { SSL_free(ssl) }

    private func verifyHost(_ host: String) throws {
        if Self.isIPAddress(host) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw TLSError.invalidConfiguration("\(host) is not a valid IP address")
            }
        } else if SSL_set1_host(ssl, host) != 1 {
            throw TLSError.invalidConfiguration("\(host) is not a valid host name")
        }
    }

    private static func sniName(for expectation: PeerExpectation) -> String? {
        guard case let .host(host) = expectation, !isIPAddress(host) else { return nil }
        return host
    }

    static func isIPAddress(_ host: String) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }

    // MARK: - Driving OpenSSL

    /// Hands ciphertext from the network to OpenSSL (without copying when nothing is left over).
    func feed(_ buffer: ByteBuffer) {
        if buffers.inbound.readableBytes == 0 {
            buffers.inbound = buffer
        } else {
            var buffer = buffer
            buffers.inbound.writeBuffer(&buffer)
        }
    }

    func handshake() -> HandshakeResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .complete }
        let code = SSL_get_error(ssl, rc)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return .wantRead }
        return .failed(failure(operation: "SSL_do_handshake"))
    }

    /// Received ciphertext OpenSSL has not consumed yet.
    var bufferedCiphertextBytes: Int { buffers.inbound.readableBytes }

    /// Appends up to `readChunkBytesMax` bytes of decrypted application data to `buffer`.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        var total = 0
        while total < Self.readChunkBytesMax {
            ERR_clear_error()
            var rc: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: min(16 * 1024, max(1, buffer.writableBytes))) { bytes in
                rc = SSL_read(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
                return rc > 0 ? Int(rc) : 0
            }
            if rc > 0 {
                total += Int(rc)
                continue
            }
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return total > 0 ? .data : .wantRead
            case SSL_ERROR_ZERO_RETURN:
                return .closeNotify
            default:
                return .failed(failure(operation: "SSL_read"))
            }
        }
        return .data
    }

    /// Encrypts all of `buffer`; the records wait in the write BIO for `takeCiphertext`.
    func write(_ buffer: ByteBuffer) -> TLSError? {
        // Room for the records up front: 16 KiB records, each with at most 22 bytes of overhead.
        buffers.outbound.reserveCapacity(minimumWritableBytes: buffer.readableBytes + (buffer.readableBytes / 16384 + 1) * 64)
        return buffer.withUnsafeReadableBytes { bytes -> TLSError? in
            guard let base = bytes.baseAddress else { return nil }
            var offset = 0
            while offset < bytes.count {
                ERR_clear_error()
                let rc = SSL_write(ssl, base + offset, Int32(clamping: bytes.count - offset))
                guard rc > 0 else { return failure(operation: "SSL_write") }
                offset += Int(rc)
            }
            return nil
        }
    }

    /// Queues our close_notify.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// Everything OpenSSL has produced for the network since the last call.
    func takeCiphertext(allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard buffers.outbound.readableBytes > 0 else { return nil }
        let out = buffers.outbound
        buffers.outbound = allocator.buffer(capacity: 0)
        return out
    }

    // MARK: - Session facts

    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    var cipher: String {
        guard let cipher = SSL_get_current_cipher(ssl), let name = SSL_CIPHER_get_name(cipher) else { return "" }
        return String(cString: name)
    }

    var peerCertificate: Certificate? {
        guard let x509 = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(x509) }
        return Certificate(retaining: x509)
    }

    // MARK: - Errors

    /// Turns the failed call's OpenSSL state into the most specific `TLSError`.
    private func failure(operation: String) -> TLSError {
        if let refusal = verifier.refusal {
            ERR_clear_error()
            return .certificateRefused(refusal)
        }
        let first = ERR_peek_error()
        let reason = upkeep_ERR_GET_REASON(first)
        switch reason {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            ERR_clear_error()
            return .certificateRefused(.missing)
        case SSL_AD_REASON_OFFSET..<(SSL_AD_REASON_OFFSET + 256):
            ERR_clear_error()
            let alert = reason - SSL_AD_REASON_OFFSET
            return .alertReceived(code: Int(alert), description: tlsAlertName(Int(alert)))
        case SSL_R_WRONG_VERSION_NUMBER, SSL_R_HTTP_REQUEST, SSL_R_HTTPS_PROXY_REQUEST, SSL_R_UNKNOWN_PROTOCOL,
             SSL_R_PACKET_LENGTH_TOO_LONG, SSL_R_RECORD_LENGTH_MISMATCH:
            OpenSSLErrorStrings.load()
            let reasonText = ERR_reason_error_string(first).map { String(cString: $0) } ?? "unknown"
            ERR_clear_error()
            return .notTLS(reasonText)
        default:
            return .openSSL(.capture(operation))
        }
    }
}

/// The RFC 8446 name of a TLS alert (OpenSSL 3.0 does not name the TLS 1.3 ones).
func tlsAlertName(_ code: Int) -> String {
    switch code {
    case 0: return "close_notify"
    case 10: return "unexpected_message"
    case 20: return "bad_record_mac"
    case 22: return "record_overflow"
    case 40: return "handshake_failure"
    case 42: return "bad_certificate"
    case 43: return "unsupported_certificate"
    case 44: return "certificate_revoked"
    case 45: return "certificate_expired"
    case 46: return "certificate_unknown"
    case 47: return "illegal_parameter"
    case 48: return "unknown_ca"
    case 49: return "access_denied"
    case 50: return "decode_error"
    case 51: return "decrypt_error"
    case 70: return "protocol_version"
    case 71: return "insufficient_security"
    case 80: return "internal_error"
    case 86: return "inappropriate_fallback"
    case 90: return "user_canceled"
    case 109: return "missing_extension"
    case 110: return "unsupported_extension"
    case 112: return "unrecognized_name"
    case 113: return "bad_certificate_status_response"
    case 115: return "unknown_psk_identity"
    case 116: return "certificate_required"
    case 120: return "no_application_protocol"
    default: return "alert \(code)"
    }
}
