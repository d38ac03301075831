/// A k3s version as k3s, GitHub tags, the channel server and a node's `kubeletVersion` write it:
/// `v1.30.6+k3s1`, a pre-release `v1.31.0-rc1+k3s1`, or a non-release build `v1.31.5+k3s-39b54b9f`.
///
/// Ordering: major, minor, patch; then a pre-release before its release (`-rc1` < `-rc2` < none);
/// then the k3s build (`+k3s1` < `+k3s2`; a non-release build before any numbered one, and builds
/// without metadata before both). It is a total order consistent with `==`, so a sorted list of
/// versions is stable. It never guesses: text that is not a version is a `K3sVersionError`.
public struct K3sVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let patch: Int
    /// Dot-separated pre-release identifiers (`["rc1"]` for `-rc1`); empty for a release.
    public let preRelease: [String]
    /// What follows `+` (`k3s1`, `k3s-39b54b9f`); nil when there is no `+`.
    public let build: String?

    /// Largest number accepted in any numeric part; more is a typo, not a version.
    static let componentMax = 99_999

    public init(major: Int, minor: Int, patch: Int, preRelease: [String] = [], build: String? = "k3s1") {
        precondition(major >= 0 && minor >= 0 && patch >= 0, "version components are never negative")
        self.major = major
        self.minor = minor
        self.patch = patch
        self.preRelease = preRelease
        self.build = build
    }

    /// Parses `v1.30.6+k3s1`; the leading `v` may be left out (it is always written back).
    public init(_ text: String) throws(K3sVersionError) {
        self = try K3sVersionParser.parse(text)
    }

    /// The k3s build number: 1 for `+k3s1`; nil for a non-release build or no build metadata.
    public var k3sBuild: Int? {
        guard let build, build.hasPrefix("k3s") else { return nil }
        let digits = build.dropFirst(3)
        guard !digits.isEmpty, digits.utf8.allSatisfy(isDigit) else { return nil }
        return Int(digits)
    }

    /// A pre-release such as `-rc1`.
    public var isPreRelease: Bool { !preRelease.isEmpty }

    /// A published release: no pre-release and a numbered k3s build (`+k3sN`).
    public var isRelease: Bool { !isPreRelease && k3sBuild != nil }

    /// The minor line this version belongs to, written `v1.30`.
    public var minorLine: MinorLine { MinorLine(major: major, minor: minor) }

    public var description: String {
        var text = "v\(major).\(minor).\(patch)"
        if !preRelease.isEmpty { text += "-" + preRelease.joined(separator: ".") }
        if let build { text += "+" + build }
        return text
    }

    public static func < (lhs: K3sVersion, rhs: K3sVersion) -> Bool {
        if lhs.major != rhs.major { return lhs.major < rhs.major }
        if lhs.minor != rhs.minor { return lhs.minor < rhs.minor }
        if lhs.patch != rhs.patch { return lhs.patch < rhs.patch }
        if lhs.preRelease != rhs.preRelease { return preReleaseLess(lhs.preRelease, rhs.preRelease) }
        return buildLess(lhs.build, rhs.build)
    }

    /// Semantic-versioning order, except that an identifier such as `rc10` compares its letters,
    /// then its trailing number numerically, so `rc2` < `rc10`.
    private static func preReleaseLess(_ lhs: [String], _ rhs: [String]) -> Bool {
        if lhs.isEmpty { return false }       // a release is after all its pre-releases
        if rhs.isEmpty { return true }
        for (left, right) in zip(lhs, rhs) where left != right {
            return NaturalOrder.less(left, right)
        }
        return lhs.count < rhs.count
    }

    /// No metadata < non-release builds (by text) < `k3sN` by number.
    private static func buildLess(_ lhs: String?, _ rhs: String?) -> Bool {
        func rank(_ build: String?) -> (Int, Int, String) {
            guard let build else { return (0, 0, "") }
            let probe = K3sVersion(major: 0, minor: 0, patch: 0, build: build)
            if let number = probe.k3sBuild { return (2, number, build) }
            return (1, 0, build)
        }
        let left = rank(lhs), right = rank(rhs)
        if left.0 != right.0 { return left.0 < right.0 }
        if left.1 != right.1 { return left.1 < right.1 }
        return left.2 < right.2
    }
}

extension K3sVersion: TextCodable {}

/// A Kubernetes minor line such as `v1.30`: the unit of the skew policy and of upgrade hops.
public struct MinorLine: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let major: Int
    public let minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses `v1.30` or `1.30`.
    public init(_ text: String) throws(K3sVersionError) {
        let body = text.hasPrefix("v") ? text.dropFirst() : Substring(text)
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw K3sVersionError(text: text, problem: .malformedCore("a minor line is written vMAJOR.MINOR, like v1.30"))
        }
        major = try K3sVersionParser.number(parts[0], name: "major", in: text)
        minor = try K3sVersionParser.number(parts[1], name: "minor", in: text)
    }

    /// The next minor line in the same major (`v1.30` → `v1.31`).
    public var next: MinorLine { MinorLine(major: major, minor: minor + 1) }

    /// Minor lines from `self` to `other` (positive when `other` is newer). Only meaningful
    /// within one major, which is all Kubernetes has had; across majors it returns nil.
    public func minorsUntil(_ other: MinorLine) -> Int? {
        major == other.major ? other.minor - minor : nil
    }

    public var description: String { "v\(major).\(minor)" }

    public static func < (lhs: MinorLine, rhs: MinorLine) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }
}

extension MinorLine: TextCodable {}

@inline(__always) func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// Compares identifiers such as `rc2` and `rc10`: split into runs of digits and non-digits;
/// digit runs compare as numbers, others as text; a purely numeric identifier comes first
/// (as in semantic versioning). Also orders node names: `node-2` before `node-10`.
public enum NaturalOrder {
    public static func less(_ lhs: String, _ rhs: String) -> Bool {
        let left = runs(lhs), right = runs(rhs)
        let leftNumeric = left.count == 1 && left[0].number != nil
        let rightNumeric = right.count == 1 && right[0].number != nil
        if leftNumeric != rightNumeric { return leftNumeric }
        for (a, b) in zip(left, right) {
            switch (a.number, b.number) {
            case let (x?, y?) where x != y: return x < y
            case (nil, nil) where a.text != b.text: return a.text < b.text
            case (_?, nil): return true
            case (nil, _?): return false
            default: continue
            }
        }
        if left.count != right.count { return left.count < right.count }
        return lhs < rhs
    }

    /// Identifiers are ASCII (the parser checks), so bytes are characters.
    private static func runs(_ text: String) -> [(text: String, number: Int?)] {
        var result: [(text: String, number: Int?)] = []
        var current: [UInt8] = []
        var inDigits = false
        for byte in text.utf8 {
            let digit = isDigit(byte)
            if !current.isEmpty && digit != inDigits {
                result.append(run(current, digits: inDigits))
                current.removeAll(keepingCapacity: true)
            }
            inDigits = digit
            current.append(byte)
        }
        if !current.isEmpty { result.append(run(current, digits: inDigits)) }
        return result
    }

    private static func run(_ bytes: [UInt8], digits: Bool) -> (text: String, number: Int?) {
        let text = String(decoding: bytes, as: UTF8.self)
        // A digit run too long for an Int compares as text, still deterministically.
        return (text, digits ? Int(text) : nil)
    }
}
