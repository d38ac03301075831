import COpenSSL
import COpenSSLShims

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
    /// The packed error codes behind `errors`, in the same order, for decisions by library and
    /// reason (never by the text, which depends on OpenSSL's string tables).
    public let codes: [UInt]

    public init(operation: String, errors: [String], codes: [UInt] = []) {
        self.operation = operation
        self.errors = errors
        self.codes = codes
    }

    /// Whether every queued error is `reason` of OpenSSL library `library` (ERR_LIB_…).
    public func onlyReason(_ reason: Int32, ofLibrary library: Int32) -> Bool {
        codes.allSatisfy { upkeep_ERR_GET_LIB($0) == library && upkeep_ERR_GET_REASON($0) == reason }
    }

    /// Builds the error for `operation` from (and empties) the thread's OpenSSL error queue.
    public static func capture(_ operation: String) -> OpenSSLError {
        var lines: [String] = []
        var codes: [UInt] = []
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
            codes.append(code)
        }
        return OpenSSLError(operation: operation, errors: lines, codes: codes)
    }

    public var description: String {
        errors.isEmpty ? "OpenSSL: \(operation) failed"
            : "OpenSSL: \(operation) failed: \(errors.joined(separator: "; "))"
    }
}
