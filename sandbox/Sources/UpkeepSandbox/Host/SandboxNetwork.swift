import Foundation
import UpkeepProcess

/// `--netns` mode: one network namespace per node on a bridge, addresses in 198.18.0.0/15
/// (one /24 per sandbox), so tests can cut a node off (`ip link set … down`). Needs root and
/// iproute2. Everything created is recorded in `sandbox.json` and removed by `destroy` or
/// `upkeep sandbox down`.
public struct SandboxNetwork: Sendable, Equatable {
    public let bridge: String
    public let bridgeAddress: String
    public let namespaces: [String]
    public let addresses: [String]
    /// The host side of each node's veth pair.
    public let links: [String]

    static let ip = "/usr/sbin/ip"

    static func run(_ arguments: [String]) async throws {
        let outcome = try await ProcessRun.run(ip, arguments, timeoutSeconds: 20)
        guard outcome.status == 0 else {
            throw SandboxError("ip \(arguments.joined(separator: " ")) failed: \(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    public static func create(directory: String, nodes: [String]) async throws -> SandboxNetwork {
        guard getuid() == 0 else { throw SandboxError("--netns needs root (network namespaces); run as root or without --netns") }
        guard FileManager.default.isExecutableFile(atPath: ip) else { throw SandboxError("--netns needs iproute2 (\(ip)); apt-get install iproute2") }
        guard nodes.count <= 250 else { throw SandboxError("--netns supports at most 250 nodes (one /24); got \(nodes.count)") }
        let tag = StableHash.hex("netns/\(directory)", length: 4)
        let subnet = Int(StableHash.fnv1a("subnet/\(directory)") % 256)
        let prefix = "198.18.\(subnet)"
        let network = SandboxNetwork(bridge: "upk\(tag)", bridgeAddress: "\(prefix).1",
                                     namespaces: nodes.indices.map { "upk\(tag)-\($0)" },
                                     addresses: nodes.indices.map { "\(prefix).\($0 + 2)" },
                                     links: nodes.indices.map { "vu\(tag)\($0)" })
        do {
            try await run(["link", "add", network.bridge, "type", "bridge"])
            try await run(["addr", "add", "\(network.bridgeAddress)/24", "dev", network.bridge])
            try await run(["link", "set", network.bridge, "up"])
            for index in nodes.indices {
                let namespace = network.namespaces[index]
                try await run(["netns", "add", namespace])
                try await run(["link", "add", network.links[index], "type", "veth", "peer", "name", "eth0", "netns", namespace])
                try await run(["link", "set", network.links[index], "master", network.bridge, "up"])
                try await run(["-n", namespace, "addr", "add", "\(network.addresses[index])/24", "dev", "eth0"])
                try await run(["-n", namespace, "link", "set", "eth0", "up"])
                try await run(["-n", namespace, "link", "set", "lo", "up"])
                try await run(["-n", namespace, "route", "add", "default", "via", network.bridgeAddress])
            }
        } catch {
            await network.destroy()
            throw error
        }
        return network
    }

    public func destroy() async {
        _ = await Self.remove(bridge: bridge, namespaces: namespaces)
    }

    /// Removes namespaces (their veth pairs go with them) and the bridge; returns how many existed.
    public static func remove(bridge: String?, namespaces: [String]) async -> Int {
        var removed = 0
        let existing = (try? await ProcessRun.run(ip, ["netns", "list"], timeoutSeconds: 10))?.output ?? ""
        for namespace in namespaces where existing.split(separator: "\n").contains(where: { $0.split(separator: " ").first.map(String.init) == namespace }) {
            // Processes still inside would keep the namespace's network alive.
            if let pids = try? await ProcessRun.run(ip, ["netns", "pids", namespace], timeoutSeconds: 10) {
                for pid in pids.output.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
            }
            if (try? await run(["netns", "del", namespace])) != nil { removed += 1 }
        }
        if let bridge, (try? await ProcessRun.run(ip, ["link", "show", bridge], timeoutSeconds: 10))?.status == 0 {
            if (try? await run(["link", "del", bridge])) != nil { removed += 1 }
        }
        return removed
    }
}
