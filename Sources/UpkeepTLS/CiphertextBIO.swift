import COpenSSL
import COpenSSLShims
import NIOCore

/// One connection's ciphertext in both directions, as OpenSSL's BIO sees it.
///
/// OpenSSL reads records straight out of the `ByteBuffer` the socket delivered and appends the
/// records it writes to a `ByteBuffer` the handler sends as is: no copy into and out of an
/// intermediate `BUF_MEM`, which a plain memory BIO would need in each direction.
final class CiphertextBuffers {
    /// Received ciphertext OpenSSL has not consumed yet.
    var inbound: ByteBuffer
    /// Ciphertext OpenSSL produced and the handler has not taken yet.
    var outbound: ByteBuffer

    init(allocator: ByteBufferAllocator) {
        inbound = allocator.buffer(capacity: 0)
        outbound = allocator.buffer(capacity: 0)
    }
}

/// The BIO method shared by every connection; the per-connection state is the BIO's data pointer.
nonisolated(unsafe) let ciphertextBIOMethod: OpaquePointer = {
    guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "upkeep ciphertext") else {
        preconditionFailure("OpenSSL could not allocate a BIO method")
    }
    BIO_meth_set_write(method, ciphertextWrite)
    BIO_meth_set_read(method, ciphertextRead)
    BIO_meth_set_ctrl(method, ciphertextControl)
    BIO_meth_set_create(method, { bio in
        BIO_set_init(bio, 1)
        return 1
    })
    BIO_meth_set_destroy(method, { _ in 1 })
    return method
}()

private func buffers(of bio: OpaquePointer?) -> CiphertextBuffers? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<CiphertextBuffers>.fromOpaque(data).takeUnretainedValue()
}

private let ciphertextWrite: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32) -> Int32 = { bio, data, length in
    guard let buffers = buffers(of: bio), let data, length > 0 else { return 0 }
    buffers.outbound.writeBytes(UnsafeRawBufferPointer(start: data, count: Int(length)))
    return length
}

private let ciphertextRead: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int32) -> Int32 = { bio, out, length in
    guard let buffers = buffers(of: bio), let out, length > 0 else { return 0 }
    let count = min(Int(length), buffers.inbound.readableBytes)
    guard count > 0 else {
        // Nothing buffered: "try again later", never end of file.
        upkeep_BIO_set_retry_read(bio)
        return -1
    }
    upkeep_BIO_clear_retry_flags(bio)
    buffers.inbound.readWithUnsafeReadableBytes { bytes in
        UnsafeMutableRawPointer(out).copyMemory(from: bytes.baseAddress!, byteCount: count)
        return count
    }
    return Int32(count)
}

private let ciphertextControl: @convention(c) (OpaquePointer?, Int32, Int, UnsafeMutableRawPointer?) -> Int = { bio, command, _, _ in
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_PENDING:
        return buffers(of: bio)?.inbound.readableBytes ?? 0
    case BIO_CTRL_WPENDING:
        return buffers(of: bio)?.outbound.readableBytes ?? 0
    default:
        return 0
    }
}
