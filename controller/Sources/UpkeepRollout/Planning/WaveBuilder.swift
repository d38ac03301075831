/// Groups agents into waves of at most `concurrency`, first fit in name order, such that no
/// wave holds every protected node of any volume (docs/planning.md, "Longhorn"). Each node is
/// tried only against waves that still have room, and a wave is checked through the volumes of
/// the node being placed, so the work grows with nodes × their volumes, not with waves².
struct WaveBuilder {
    private(set) var waves: [[Int]] = []
    /// Per wave: for each constraining volume, how many of its protected nodes the wave holds.
    private var counts: [[Int32: Int32]] = []
    /// Per wave: some volume has two or more of its protected nodes in it.
    private(set) var shared: [Bool] = []
    /// Nodes placed later than the first wave with room, and why.
    private(set) var bumps: [Int: String] = [:]
    private(set) var separations = 0

    static func build(_ agents: [Int], cluster: ClusterView, concurrency: Int) -> WaveBuilder {
        var builder = WaveBuilder()
        var waveOf = [Int32](repeating: -1, count: cluster.nodes.count)
        var firstOpen = 0
        for agent in agents {
            var chosen: Int?
            var firstConflict: (wave: Int, volume: Int32)?
            // A new, empty wave always takes the agent (constraints name only volumes with two or
            // more protected nodes, and concurrency is at least 1), so the search ends there at the latest.
            for wave in firstOpen...builder.waves.count {
                if wave == builder.waves.count {
                    builder.waves.append([])
                    builder.counts.append([:])
                    builder.shared.append(false)
                }
                if builder.waves[wave].count < concurrency {
                    if let volume = builder.conflict(agent, wave: wave, cluster: cluster) {
                        if firstConflict == nil { firstConflict = (wave, volume) }
                    } else {
                        chosen = wave
                        break
                    }
                }
            }
            guard let wave = chosen else {
                preconditionFailure("agent \(cluster.nodes[agent].name) fits no wave, not even a new one (concurrency \(concurrency))")
            }
            builder.place(agent, wave: wave, cluster: cluster)
            waveOf[agent] = Int32(wave)
            if let firstConflict {
                builder.separations += 1
                let partners = cluster.protected[Int(firstConflict.volume)]
                    .filter { waveOf[Int($0)] == Int32(firstConflict.wave) }
                    .map { cluster.nodes[Int($0)].name }
                let volume = cluster.volumes[Int(firstConflict.volume)]
                let what = volume.isRunning ? "running healthy replica" : "complete copy"
                builder.bumps[agent] = "not in wave \(firstConflict.wave + 1): with \(partners.joined(separator: ", ")) it would take down every \(what) of volume \(volume.name)"
            }
            while firstOpen < builder.waves.count && builder.waves[firstOpen].count >= concurrency { firstOpen += 1 }
        }
        return builder
    }

    /// A volume that `node` would complete in `wave` (all its protected nodes down at once).
    private func conflict(_ node: Int, wave: Int, cluster: ClusterView) -> Int32? {
        for volume in cluster.constraints[node] {
            let held = counts[wave][volume] ?? 0
            if held + 1 >= cluster.protectedCount[Int(volume)] { return volume }
        }
        return nil
    }

    private mutating func place(_ node: Int, wave: Int, cluster: ClusterView) {
        waves[wave].append(node)
        for volume in cluster.constraints[node] {
            let held = (counts[wave][volume] ?? 0) + 1
            counts[wave][volume] = held
            if held >= 2 { shared[wave] = true }
        }
    }

    /// One line saying why the wave's members may go down together.
    func summary(wave: Int, number: Int, cluster: ClusterView) -> String {
        let members = waves[wave]
        if members.count == 1 { return "wave \(number): \(cluster.nodes[members[0]].name) alone" }
        let names = members.map { cluster.nodes[$0].name }
        let who = members.count <= 3
            ? names.dropLast().joined(separator: ", ") + " and " + names[names.count - 1]
            : "\(members.count) agents"
        return shared[wave]
            ? "wave \(number): \(who) share volumes, but every volume keeps a healthy replica outside this wave"
            : "wave \(number): \(who) share no volume"
    }
}
