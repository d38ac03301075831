#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import UpkeepAgent
import UpkeepAgentCore

/// Plain-text renderings for operators.
enum ReportFormat {
    static func probe(_ report: ProbeReport) -> String {
        let width = max(5, report.checks.map(\.name.count).max() ?? 0)
        var text = ""
        for check in report.checks {
            let name = check.name + String(repeating: " ", count: width - check.name.count)
            text += "\(name)  \(check.ok ? "ok  " : "FAIL")  \(String(check.latencyMs).leftPadded(5)) ms  \(check.message)\n"
        }
        text += "healthy: \(report.healthy ? "yes" : "no")\n"
        return text
    }

    /// Pretty, key-sorted JSON on stdout, for scripts.
    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func outcome(_ id: String, _ outcome: OperationOutcome) -> String {
        var text = "\(id): \(outcome.state.rawValue)"
        if let failure = outcome.failure { text += " (\(failure.rawValue))" }
        return text + ": \(outcome.message)\n"
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
