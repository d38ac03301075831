import COpenSSL

/// A failed OpenSSL call: what Upkeep was doing, and the lines OpenSSL left on its error queue.
///
/// `capture` drains the calling thread's error queue, so a later failure never reports stale
/// lines from this one. It must never be used for errors an operator can fix by themselves
/// (a missing file, a bad name): those have their own typed errors with advice.
public struct OpenSSLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What Upkeep was doing, e.g. "signing the certificate".
    public let operation: String
    /// OpenSSL's own error lines, oldest first (may be empty).
    public let errors: [String]

    public init(operation: String, errors: [String]) {
        self.operation = operation
        self.errors = errors
    }

    /// Builds the error for `operation` from (and empties) the thread's OpenSSL error queue.
    public static func capture(_ operation: String) -> OpenSSLError {
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            ERR_error_string_n(code, &buffer, buffer.count)
            var line = String(nulTerminated: buffer)
            if flags & ERR_TXT_STRING != 0, let data, data.pointee != 0 {
                line += " (\(String(cString: data)))"
            }
            lines.append(line)
        }
        return OpenSSLError(operation: operation, errors: lines)
    }

    public var description: String {
        errors.isEmpty ? "OpenSSL: \(operation) failed"
            : "OpenSSL: \(operation) failed: \(errors.joined(separator: "; "))"
    }
}
