import ArgumentParser
import UpkeepSandbox

/// `upkeep sandbox fault`: sets one fault knob of a node or of the release server.
struct SandboxFault: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault",
        abstract: "Make a node (or the release server) misbehave.",
        discussion: "KIND is one of:\n" + SandboxControl.faultKinds.map { "  \($0.name): \($0.help)" }.joined(separator: "\n")
            + "\nk3s faults apply when k3s next starts, by default only after an upgrade (at any version but the one the node runs now)."
    )

    @OptionGroup var directory: SandboxDirectoryOption

    @Argument(help: "A node name, or `releases` (also `release-server`) for the release server, `longhorn`, `flux` or `api`.")
    var node: String

    @Argument(help: "The fault (see above).")
    var kind: String

    @Argument(help: "SECONDS for slow-start, slow-rebuild, rate-limit and retry-after; REPO for corrupt-json; NAME for drop-asset; N for page-size.")
    var value: String?

    @Option(name: .customLong("k3s-version"), help: "Apply the k3s fault only at this version (drop-asset: only from this release).")
    var k3sVersion: String?

    @Flag(name: .customLong("any-version"), help: "Apply the k3s fault at every version, the current one included.")
    var anyVersion = false

    @Option(name: .long, help: "retry-after: how many API requests the secondary limit refuses (default 1).")
    var requests: Int?

    @Option(name: .long, help: "retry-after: the status of a refusal, 403 or 429 (default 403).")
    var status: Int?

    @Option(name: .long, help: "api stall-writes: the resource whose writes stall and fail (its plural name, e.g. helmreleases).")
    var resource: String?

    func run() async throws {
        print(try await SandboxControl.setFault(directory: directory.path, node: node, kind: kind, value: value, version: k3sVersion,
                                                anyVersion: anyVersion,
                                                releaseOptions: .init(requests: requests, status: status), resource: resource))
    }
}
