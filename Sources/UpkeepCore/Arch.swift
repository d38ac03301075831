/// A CPU architecture as k3s and the `kubernetes.io/arch` label name it, with the names of the
/// release assets that serve it. Never guessed: an unknown name is an `ArchError`.
public enum Arch: String, Codable, Sendable, CaseIterable, Comparable {
    case amd64
    case arm64
    case arm
    case s390x

    /// Parses `kubernetes.io/arch` / GOARCH names (`amd64`, `arm64`, `arm`, `s390x`), and also
    /// the machine names `uname -m` prints (`x86_64`, `aarch64`, `armv7l`, …) as install.sh maps them.
    public init(_ name: String) throws(ArchError) {
        switch name {
        case "amd64", "x86_64": self = .amd64
        case "arm64", "aarch64": self = .arm64
        case "arm", "armhf", "armv7l", "armv8l", "armv7", "armv6l": self = .arm
        case "s390x": self = .s390x
        default: throw ArchError(name: name)
        }
    }

    /// The binary's asset name in a k3s GitHub release.
    public var binaryAssetName: String {
        switch self {
        case .amd64: "k3s"
        case .arm64: "k3s-arm64"
        case .arm: "k3s-armhf"
        case .s390x: "k3s-s390x"
        }
    }

    /// The release's air-gap images tarballs for this arch, in the order k3s recommends them
    /// (https://docs.k3s.io/installation/airgap: zstd is the smallest and fastest to import).
    public var airgapImagesAssetNames: [String] {
        [".tar.zst", ".tar.gz", ".tar"].map { "k3s-airgap-images-\(rawValue)\($0)" }
    }

    /// The `sha256sum` file of a k3s release listing this arch's assets; note `arm`, not `armhf`.
    public var checksumAssetName: String { "sha256sum-\(rawValue).txt" }

    public static func < (lhs: Arch, rhs: Arch) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// An architecture name Upkeep does not know.
public struct ArchError: Error, Equatable, Sendable, CustomStringConvertible {
    public let name: String

    public init(name: String) { self.name = String(name.prefix(64)) }

    public var description: String {
        "unknown architecture \"\(name)\": k3s publishes binaries for \(Arch.allCases.map(\.rawValue).joined(separator: ", "))"
    }
}
