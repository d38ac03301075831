import UpkeepCore
import UpkeepHTTP

/// The report as text for a terminal: a summary table, the k3s nodes, architecture support,
/// warnings and the source. Deterministic, so tests compare it whole.
public enum ReportTable {
    public static func render(_ report: CheckReport) -> String {
        var lines: [String] = []
        var rows = [["COMPONENT", "INSTALLED", "TARGET", "UPDATE", "PATH"]]
        for component in report.components {
            rows.append([component.component.rawValue, installed(component), component.target.map { "\($0)" } ?? "-",
                         component.updateAvailable ? "yes" : "no",
                         component.path.isEmpty ? "-" : component.path.map { "\($0.version)" }.joined(separator: " -> ")])
        }
        lines += columns(rows)
        if let k3s = report.component(.k3s), let nodes = k3s.nodes, !nodes.isEmpty {
            lines.append("")
            lines.append("k3s nodes (target from the \(k3s.channel ?? "?") channel):")
            var nodeRows = [["NODE", "ROLE", "ARCH", "VERSION", "READY"]]
            for node in nodes {
                nodeRows.append([node.name, node.role.rawValue, node.arch, node.version.map { "\($0)" } ?? node.kubeletVersion, node.ready ? "yes" : "no"])
            }
            lines += columns(nodeRows).map { "  " + $0 }
            for arch in k3s.architectures ?? [] where !k3s.path.isEmpty {
                let missing = arch.releases.filter { $0.binaryPublished != true || $0.checksumPublished != true }
                let count = "\(arch.nodes.count) node\(arch.nodes.count == 1 ? "" : "s")"
                if missing.isEmpty {
                    lines.append("  \(arch.arch) (\(count)): every release on the path publishes \(arch.releases.first?.binary ?? "") and \(arch.releases.first?.checksum ?? "")")
                } else {
                    let text = missing.map { "\($0.version) (\(state($0.binaryPublished, $0.binary)), \(state($0.checksumPublished, $0.checksum)))" }
                    lines.append("  \(arch.arch) (\(count)): " + text.joined(separator: "; "))
                }
            }
        }
        let warnings = report.allWarnings
        if !warnings.isEmpty {
            lines.append("")
            lines.append("Warnings:")
            lines += warnings.map { "  \($0)" }
        }
        lines.append("")
        var source = "Source: \(report.releaseSource)"
        if let rate = report.rateLimit, let remaining = rate.remaining {
            source += " (GitHub rate limit: \(remaining)\(rate.limit.map { "/\($0)" } ?? "") left)"
        }
        lines.append(source)
        lines.append(report.updatesAvailable ? "Updates are available." : "Everything is up to date.")
        return lines.joined(separator: "\n") + "\n"
    }

    static func installed(_ component: ComponentReport) -> String {
        switch component.installed.state {
        case .notInstalled: return "not installed"
        case .unknown: return "unknown"
        case .installed: break
        }
        if component.component == .k3s, let nodes = component.nodes {
            let versions = Array(Set(nodes.compactMap(\.version))).sorted()
            if versions.count > 1 { return "mixed: " + versions.map { "\($0)" }.joined(separator: ", ") }
            return "\(versions.first.map { "\($0)" } ?? "?") (\(nodes.count) node\(nodes.count == 1 ? "" : "s"))"
        }
        var text = component.installed.version.map { component.installed.exact ? "\($0)" : "\($0.minorLine).x" } ?? "?"
        if component.installed.bootstrapped == true { text += " (bootstrapped)" }
        return text
    }

    static func state(_ published: Bool?, _ name: String) -> String {
        switch published {
        case true?: "\(name) ok"
        case false?: "no \(name)"
        case nil: "\(name) unknown"
        }
    }

    static func columns(_ rows: [[String]]) -> [String] {
        guard let width = rows.first?.count else { return [] }
        let widths = (0..<width).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == width - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }.joined(separator: "  ").trailingSpacesRemoved
        }
    }
}

extension String {
    var trailingSpacesRemoved: String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
