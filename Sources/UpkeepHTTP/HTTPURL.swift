/// An absolute `http://` or `https://` URL, split into what a connection needs.
///
/// Parsing is strict: no user info (credentials never travel in URLs), a host is required, the
/// port is 1–65535. The path and query are kept as given (already percent-encoded); `appending`
/// encodes query values. It never resolves host names: that happens when connecting.
///
/// The agent parses its probe URLs with it at every start: it uses prefix tests and byte loops,
/// never a `String` separator search (that is `_StringProcessing`'s searcher, or Foundation's).
public struct HTTPURL: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable {
        case http
        case https
    }

    public var scheme: Scheme
    /// A DNS name or IP address, without brackets for IPv6.
    public var host: String
    public var port: Int
    /// The path with its query (`/repos/k3s-io/k3s/releases?per_page=100`), always starting with `/`.
    public var target: String

    public init(scheme: Scheme, host: String, port: Int? = nil, target: String = "/") {
        self.scheme = scheme
        self.host = host
        self.port = port ?? (scheme == .https ? 443 : 80)
        self.target = target.hasPrefix("/") ? target : "/" + target
    }

    public init(_ text: String) throws(HTTPClientError) {
        guard let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://"),
              let scheme = Scheme(rawValue: text[..<colon].lowercased()) else {
            throw .invalidURL(text, "it must start with http:// or https://")
        }
        let rest = text[text.index(colon, offsetBy: 3)...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if let fragment = target.firstIndex(of: "#") { target = String(target[..<fragment]) }
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !authority.contains("@") else { throw .invalidURL(text, "credentials in URLs are refused; use a token file") }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL(text, "unclosed IPv6 address") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL(text, "unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL(text, "no host") }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }) else {
            throw .invalidURL(text, "invalid characters in host \(host)")
        }
        var port: Int?
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw .invalidURL(text, "invalid port \(portText)") }
            port = value
        }
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\u{7F}" && ($0.asciiValue ?? 0) >= 0x20 }) else {
            throw .invalidURL(text, "the path must be percent-encoded ASCII without spaces")
        }
        self.init(scheme: scheme, host: host.lowercased(), port: port, target: target)
    }

    /// Scheme, host and port: connections are pooled per origin, and credentials stay with theirs.
    public var origin: Origin { Origin(scheme: scheme, host: host, port: port) }

    /// The path without the query.
    public var path: String { String(target.prefix { $0 != "?" }) }

    /// The `Host` header value.
    public var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (scheme == .https ? 443 : 80) ? name : "\(name):\(port)"
    }

    public var description: String { "\(scheme.rawValue)://\(hostHeader)\(target)" }

    /// This URL with `items` added to its query, each name and value percent-encoded.
    public func appending(query items: [(String, String)]) -> HTTPURL {
        guard !items.isEmpty else { return self }
        var copy = self
        let encoded = items.map { "\(Self.percentEncode($0.0))=\(Self.percentEncode($0.1))" }.joined(separator: "&")
        copy.target += (target.contains("?") ? "&" : "?") + encoded
        return copy
    }

    /// This URL with `segment` appended to its path (a `/` inserted when needed), the query dropped.
    public func appending(path segment: String) -> HTTPURL {
        var copy = self
        let base = path.hasSuffix("/") ? String(path.dropLast()) : path
        copy.target = base + (segment.hasPrefix("/") ? segment : "/" + segment)
        return copy
    }

    /// Resolves a `Location` header (absolute, scheme-relative, absolute-path or relative).
    public func resolving(_ reference: String) throws(HTTPClientError) -> HTTPURL {
        if reference.contains("://") { return try HTTPURL(reference) }
        if reference.hasPrefix("//") { return try HTTPURL("\(scheme.rawValue):\(reference)") }
        var copy = self
        if reference.hasPrefix("/") {
            copy.target = reference
        } else if reference.hasPrefix("?") {
            copy.target = path + reference
        } else {
            let directory = path.hasSuffix("/") ? path : String(path[...(path.lastIndex(of: "/") ?? path.startIndex)])
            copy.target = directory + reference
        }
        if let fragment = copy.target.firstIndex(of: "#") { copy.target = String(copy.target[..<fragment]) }
        return copy
    }

    /// RFC 3986 unreserved characters stay; everything else is `%XX`.
    public static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default:
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// Decodes `%XX` sequences; nil for malformed input. A `+` stays a `+` (k3s versions carry
    /// one in paths) unless `plusIsSpace`, as in a query string's form encoding.
    public static func percentDecode(_ text: String, plusIsSpace: Bool = false) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// Where a connection goes: scheme, host and port.
public struct Origin: Sendable, Hashable, CustomStringConvertible {
    public var scheme: HTTPURL.Scheme
    public var host: String
    public var port: Int
    public var description: String { "\(scheme.rawValue)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}
