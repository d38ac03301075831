import UpkeepFleet
import UpkeepUpdates

/// The digests GitHub's releases API reports for k3s's assets (`assets[].digest`,
/// https://docs.github.com/en/rest/releases/assets), for the artifact cache to check beside the
/// release's checksum file when k3s comes from GitHub (or the sandbox release server playing it).
struct GitHubPublishedDigests: PublishedDigests {
    let releases: GitHubReleaseSource

    var description: String { "the releases API at \(releases.endpoints.api)" }

    func assetDigests(tag: String) async throws(ArtifactError) -> [String: String?] {
        let release: Release
        do {
            release = try await releases.release(of: .k3s, tag: tag)
        } catch let error as ReleaseSourceError where error.problem.hasPrefix("not found") {
            throw .notFound(asset: "release \(tag)", source: error.source)
        } catch {
            throw .unavailable(asset: "release \(tag)", source: "\(releases.endpoints.api)", reason: "\(error)")
        }
        var digests: [String: String?] = [:]
        for asset in release.assets {
            digests[asset.name] = .some(asset.digest.map { String($0.dropFirst("sha256:".count)) })
        }
        return digests
    }
}
