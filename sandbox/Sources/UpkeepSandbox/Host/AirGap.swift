import Foundation

/// Air-gapped sandbox nodes (`sandbox up --airgap NODE,…`): as k3s documents for nodes without
/// a registry (https://docs.k3s.io/installation/airgap, "Manually deploy images"), the node's
/// k3s imports its images from `/var/lib/rancher/k3s/agent/images/` at start: the release's
/// `k3s-airgap-images-<arch>.tar.zst` (or `.tar.gz`, `.tar`), listed with its checksum in
/// `sha256sum-<arch>.txt`. Without the tarball of the version it runs, the kubelet cannot start
/// a pod, so the node never becomes Ready. The release server's tarballs are small stand-ins
/// that name their version; that is what the fake k3s looks for.
public enum AirGap {
    /// The formats k3s publishes and imports, in the order it prefers them.
    public static let formats = [".tar.zst", ".tar.gz", ".tar"]
    /// Every sandbox node is amd64 (as its Node object says).
    public static let arch = "amd64"

    public static func tarballName(arch: String, format: String) -> String { "k3s-airgap-images-\(arch)\(format)" }

    /// What the release server serves as the tarball of `version` for `arch` in `format`.
    public static func tarball(version: String, arch: String, format: String) -> [UInt8] {
        Array("\(marker(version: version, arch: arch)) (\(format.dropFirst()))\n".utf8)
    }

    static func marker(version: String, arch: String) -> String { "airgap images for \(version) \(arch)" }

    public static func imagesDirectory(_ node: SandboxNode) -> String { "\(node.dataDir)/agent/images" }

    /// Why an air-gapped node cannot run `version` (nil: it can, or it is not air-gapped).
    static func missingImages(node: SandboxNode, version: String) -> String? {
        guard node.airgap == true else { return nil }
        let directory = imagesDirectory(node)
        let marker = Array(marker(version: version, arch: arch).utf8)
        for format in formats {
            let path = "\(directory)/\(tarballName(arch: arch, format: format))"
            if let data = FileManager.default.contents(atPath: path), Array(data.prefix(marker.count)) == marker { return nil }
        }
        return "Failed to import images for \(version): this node is air-gapped and none of k3s-airgap-images-\(arch).tar.zst, .tar.gz "
            + "or .tar in \(directory) holds them; the kubelet cannot start its pods, so the node will not become Ready. "
            + "Place the release's images tarball there before starting this version (https://docs.k3s.io/installation/airgap)"
    }

    /// Puts the tarball of `version` in place on `node` (what `sandbox up` does for the version
    /// it starts with, as an air-gap install does).
    static func place(version: String, on node: SandboxNode) throws {
        let format = formats[0]
        try JSONFiles.atomicWrite(Data(tarball(version: version, arch: arch, format: format)),
                                  to: "\(imagesDirectory(node))/\(tarballName(arch: arch, format: format))")
    }
}
