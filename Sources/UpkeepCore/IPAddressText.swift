/// IP address literals, read without a socket library: the protocol's message checks use this,
/// and they are compiled with the standard library alone (fuzz/run.sh).
public enum IPAddressText {
    /// `10.43.0.1`: four decimal octets, no sign and no leading zero (as glibc's `inet_pton`).
    public static func ipv4(_ text: some StringProtocol) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }), part == "0" || part.first != "0",
                  let value = UInt8(part) else { return nil }
            octets.append(value)
        }
        return octets
    }

    /// `fd00::1`, `::`, `::ffff:10.0.0.1`: RFC 4291 section 2.2 text forms, as sixteen octets.
    /// A zone (`%eth0`) is refused: a node's address has none.
    public static func ipv6(_ text: some StringProtocol) -> [UInt8]? {
        guard text.count <= 45, text.contains(":") else { return nil }
        let whole = String(text)
        var halves = [whole]
        if let gap = whole.firstRange(of: "::") {
            halves = [String(whole[..<gap.lowerBound]), String(whole[gap.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        }
        guard let head = groups(halves[0], mayEndInIPv4: halves.count == 1) else { return nil }
        var tail: [UInt16] = []
        if halves.count == 2 {
            guard let parsed = groups(halves[1], mayEndInIPv4: true) else { return nil }
            tail = parsed
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard head.count == 8 else { return nil }
        }
        let all = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// True for an IPv4 or IPv6 literal.
    public static func isLiteral(_ text: some StringProtocol) -> Bool {
        ipv4(text) != nil || ipv6(text) != nil
    }

    /// Colon-separated 16-bit groups; the last may be a dotted IPv4 address (two groups).
    private static func groups(_ text: String, mayEndInIPv4: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var result: [UInt16] = []
        for (index, part) in parts.enumerated() {
            if index == parts.count - 1, mayEndInIPv4, part.contains(".") {
                guard let octets = ipv4(part) else { return nil }
                result.append(UInt16(octets[0]) << 8 | UInt16(octets[1]))
                result.append(UInt16(octets[2]) << 8 | UInt16(octets[3]))
                continue
            }
            guard (1...4).contains(part.count), part.allSatisfy({ $0.isHexDigit && $0.isASCII }), let value = UInt16(part, radix: 16) else { return nil }
            result.append(value)
        }
        return result
    }
}
