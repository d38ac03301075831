import UpkeepCore

extension Plan {
    /// `upkeep plan`: a headline, one table per hop (wave, node, role, from → to, why), the
    /// nodes left alone, the Longhorn constraints, then warnings and caveats.
    public func table() -> String {
        var out = headline() + "\n"
        for hop in hops {
            let kind = hop.number == 1 && hops.count > 1 && hop.waves.allSatisfy({ $0.role == .agent }) && direction == .upgrade
                ? " (lagging agents catch up first)" : ""
            out += "\nHop \(hop.number) of \(hops.count): \(direction == .downgrade ? "down to" : "to") \(hop.version)\(kind); "
                + "rollback: \(hop.rollbackKind.rawValue) (\(hop.rollbackKind.explanation))\n"
            var rows = [["WAVE", "NODE", "ROLE", "ARCH", "FROM", "", "TO", "WHY"]]
            for wave in hop.waves {
                for step in wave.steps {
                    let role = step.role == .server ? (step.etcd ? "server+etcd" : "server") : "agent"
                    rows.append([wave.label, step.node, role, step.arch.rawValue, step.from.description, "→", step.to.description, step.reason])
                }
            }
            out += TextTable.render(rows, indent: "  ")
        }
        if !unchanged.isEmpty {
            out += "\nUnchanged (\(unchanged.count)):\n"
            out += TextTable.render(unchanged.prefix(20).map { [$0.node, $0.version.description, $0.reason] }, indent: "  ")
            if unchanged.count > 20 { out += "  … and \(unchanged.count - 20) more\n" }
        }
        if longhorn.volumes > 0 {
            out += "\nLonghorn: \(longhorn.volumes) volume\(longhorn.volumes == 1 ? "" : "s") (\(longhorn.attached) attached, \(longhorn.detached) detached); "
            out += "\(longhorn.constraining) constrain waves (no wave holds all of a volume's healthy replicas); "
            out += "\(longhorn.separations) agent\(longhorn.separations == 1 ? "" : "s") moved to a later wave for that\n"
        }
        for warning in warnings { out += "\nwarning: \(warning)" }
        if !warnings.isEmpty { out += "\n" }
        for caveat in caveats { out += "\ncaveat: \(caveat)" }
        if !caveats.isEmpty { out += "\n" }
        return out
    }

    /// One line: what, how many hops and waves.
    public func headline() -> String {
        switch direction {
        case .none:
            return "Nothing to do: every node already runs \(target)."
        case .upgrade, .downgrade:
            let moving = Set(waves.flatMap(\.nodes)).count
            let serverWaves = waves.filter { $0.role == .server }.count
            let canaries = waves.filter(\.isCanary).count
            let agentWaves = waves.count - serverWaves - canaries
            let verb = direction == .upgrade ? "Upgrade" : "Downgrade"
            let path = hops.map(\.version.minorLine.description).joined(separator: " → ")
            var line = "\(verb) to \(target): \(moving) node\(moving == 1 ? "" : "s") in \(hops.count) hop\(hops.count == 1 ? "" : "s") (\(path)); "
                + "\(serverWaves) server step\(serverWaves == 1 ? "" : "s") one at a time, "
            if canaries > 0 {
                let soak = policy.canarySoakSeconds > 0 ? ", a soak of \(policy.canarySoakSeconds) s" : ""
                line += "\(canaries) canary agent\(canaries == 1 ? "" : "s") alone\(agentWaves > 0 ? "\(soak) and the gates, then " : "")"
            }
            if agentWaves > 0 || canaries == 0 {
                line += "\(agentWaves) agent wave\(agentWaves == 1 ? "" : "s") of at most \(policy.agentConcurrency)"
            }
            return line
        }
    }
}

extension RollbackKind {
    /// What rolling a hop of this kind back takes, in a few words (the plan table, the
    /// confirmation, `status`).
    public var explanation: String {
        switch self {
        case .binaries: "the k3s binaries go back"
        case .restore: "servers go back a minor only with the datastore snapshot taken before this hop restored"
        }
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
enum TextTable {
    static func render(_ rows: [[String]], indent: String = "") -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (column, cell) in row.enumerated() where column < columns - 1 { widths[column] = max(widths[column], cell.count) }
        }
        var out = ""
        for row in rows {
            var line = indent
            for (column, cell) in row.enumerated() {
                line += cell
                if column < row.count - 1 {
                    line += String(repeating: " ", count: widths[column] - cell.count) + (widths[column] == 0 ? "" : "  ")
                }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
