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
    /// The packed error codes OpenSSL left, oldest first (may be empty), for decisions by
    /// library and reason (never by the text, which depends on OpenSSL's string tables).
    public let codes: [UInt]
    /// The text OpenSSL attached to each code ("" for none), in the same order.
    public let details: [String]

    public init(operation: String, codes: [UInt] = [], details: [String] = []) {
        self.operation = operation
        self.codes = codes
        self.details = details
    }

    /// OpenSSL's own error lines, oldest first. Put into words only when read: OpenSSL's
    /// error strings are loaded then (`OpenSSLErrorStrings`), so an error that is only decided
    /// on by its code (the end of a PEM chain) never loads them.
    public var errors: [String] {
        OpenSSLErrorStrings.load()
        var buffer = [CChar](repeating: 0, count: 256)
        return codes.indices.map { index in
            ERR_error_string_n(codes[index], &buffer, buffer.count)
            let line = String(nulTerminated: buffer)
            let detail = index < details.count ? details[index] : ""
            return detail.isEmpty ? line : line + " (\(detail))"
        }
    }

    /// Whether every queued error is `reason` of OpenSSL library `library` (ERR_LIB_…).
    public func onlyReason(_ reason: Int32, ofLibrary library: Int32) -> Bool {
        codes.allSatisfy { upkeep_ERR_GET_LIB($0) == library && upkeep_ERR_GET_REASON($0) == reason }
    }

    /// Builds the error for `operation` from (and empties) the thread's OpenSSL error queue.
    public static func capture(_ operation: String) -> OpenSSLError {
        var codes: [UInt] = []
        var details: [String] = []
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            codes.append(code)
            details.append(flags & ERR_TXT_STRING != 0 ? data.map { String(cString: $0) } ?? "" : "")
        }
        return OpenSSLError(operation: operation, codes: codes, details: details)
    }

    public var description: String {
        codes.isEmpty ? "OpenSSL: \(operation) failed"
            : "OpenSSL: \(operation) failed: \(errors.joined(separator: "; "))"
    }
}
