import COpenSSL

/// Moves bytes between Swift and OpenSSL memory BIOs. Internal plumbing; never holds a BIO
/// beyond one call.
enum MemoryBIO {
    /// Runs `body` with a read-only BIO over `text`'s UTF-8 bytes.
    static func reading<T>(_ text: String, operation: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        let bytes = Array(text.utf8)
        return try reading(bytes, operation: operation, body)
    }

    /// Runs `body` with a read-only BIO over `bytes`.
    static func reading<T>(_ bytes: [UInt8], operation: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        try bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
                throw OpenSSLError.capture(operation)
            }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }

    /// Creates an empty memory BIO, lets `write` fill it (returning OpenSSL's 1-for-success
    /// convention as `true`), and returns what was written as text.
    static func writing(operation: String, _ write: (OpaquePointer) -> Bool) throws -> String {
        let bytes = try writingBytes(operation: operation, write)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func writingBytes(operation: String, _ write: (OpaquePointer) -> Bool) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSLError.capture(operation) }
        defer { BIO_free(bio) }
        ERR_clear_error()
        guard write(bio) else { throw OpenSSLError.capture(operation) }
        let count = Int(BIO_ctrl_pending(bio))
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(count)) }
        guard read == Int32(count) || count == 0 else { throw OpenSSLError.capture(operation) }
        return bytes
    }
}

extension String {
    /// Text from a C buffer filled by OpenSSL or libc, up to its first NUL.
    init(nulTerminated buffer: [CChar]) {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self.init(decoding: bytes, as: UTF8.self)
    }
}
