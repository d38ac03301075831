import Foundation
import Testing
import UpkeepTestSupport

/// The repository's `deploy/scripts/`, found from this source file.
private let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("deploy/scripts").path

/// The seed's wrapper scripts (docs/operations.md, "The wrapper scripts"): what they refuse, and
/// how. What they run is run for real by the operations guide's test against a sandbox
/// (Tests/UpkeepEndToEndTests/OperationsGuideTests.swift).
@Suite struct WrapperScriptTests {
    static let names = ["check-updates.sh", "apply-updates.sh", "maintenance-mode.sh", "validate-cluster-health.sh", "rollback-updates.sh",
                        "emergency-recovery.sh", "update-history.sh", "update-report.sh", "update-metrics.sh"]

    /// Runs a wrapper with the built `upkeep` first on the path.
    static func run(_ name: String, _ arguments: [String]) throws -> ProcessResult {
        let binaries = (try UpkeepBinary.path() as NSString).deletingLastPathComponent
        let path = "\(binaries):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"
        return try runProcess("/usr/bin/env", ["PATH=\(path)", "UPKEEP_CONFIG=/nonexistent/upkeep.yaml", "\(scripts)/\(name)"] + arguments,
                              timeoutSeconds: 60)
    }

    @Test func theSeedsScriptsAreAllThereAndExecutable() throws {
        let present = try FileManager.default.contentsOfDirectory(atPath: scripts).filter { $0.hasSuffix(".sh") }.sorted()
        #expect(present == (Self.names + ["wrapper-lib.sh"]).sorted())
        for name in Self.names {
            #expect(FileManager.default.isExecutableFile(atPath: "\(scripts)/\(name)"), "\(name) is not executable")
        }
        #expect(!FileManager.default.isExecutableFile(atPath: "\(scripts)/wrapper-lib.sh"), "wrapper-lib.sh is sourced, not run")
    }

    @Test func everyScriptPrintsItsUsage() throws {
        for name in Self.names {
            let help = try Self.run(name, ["--help"])
            #expect(help.status == 0 && help.output.hasPrefix(name + " "), "\(name) --help: \(help.output)\(help.error)")
        }
    }

    /// shellcheck (Debian package shellcheck; scripts/install-deps) finds nothing, following the
    /// sourced library.
    @Test func theScriptsAreShellcheckClean() throws {
        let shellcheck = "/usr/bin/shellcheck"
        try #require(FileManager.default.isExecutableFile(atPath: shellcheck), "shellcheck is missing: run scripts/install-deps (Debian package shellcheck)")
        let result = try runProcess(shellcheck, ["-x", "--source-path", scripts] + Self.names.map { "\(scripts)/\($0)" } + ["\(scripts)/wrapper-lib.sh"],
                                    timeoutSeconds: 120)
        #expect(result.status == 0, "\(result.output)\(result.error)")
    }

    /// Flags a wrapper cannot honour, and those whose command comes with a later issue: exit 2,
    /// a message naming what to use instead, and `upkeep` never run (the configuration named in
    /// UPKEEP_CONFIG does not exist, so any upkeep command would fail otherwise).
    @Test func aFlagAScriptCannotHonourIsRefusedWithWhatToUseInstead() throws {
        let refusals: [(String, [String], String)] = [
            ("check-updates.sh", ["--component", "etcd"], "the components are k3s, flux and longhorn"),
            ("check-updates.sh", ["--output", "yaml"], "write table or json"),
            ("check-updates.sh", ["--component"], "--component needs a value"),
            ("check-updates.sh", ["--bogus"], "unknown option --bogus"),
            ("apply-updates.sh", ["--all", "--component", "k3s"], "--all updates every component: give it without --component"),
            ("apply-updates.sh", ["--all", "--to", "v1.31.4+k3s1", "--channel", "stable"], "give --to or --channel, not both"),
            ("apply-updates.sh", ["--component", "k3s", "--maintenance-window", "--emergency"], "contradict each other"),
            ("apply-updates.sh", ["--component", "flux", "--channel", "stable"], "--channel is for k3s"),
            ("apply-updates.sh", ["--component", "k3s", "--to", "v1.31.4+k3s1", "--channel", "stable"], "give --to or --channel, not both"),
            ("apply-updates.sh", [], "name the component"),
            ("maintenance-mode.sh", ["--notify-users"], "--notify-users goes with --enable or --disable"),
            ("maintenance-mode.sh", ["--status", "--notify-users"], "--notify-users goes with --enable or --disable"),
            ("maintenance-mode.sh", ["--disable", "--reason", "done"], "--reason goes with --enable"),
            ("maintenance-mode.sh", ["--enable", "--reason"], "--reason needs a value"),
            ("maintenance-mode.sh", ["--enable", "--disable"], "give one of"),
            ("maintenance-mode.sh", [], "give one of"),
            ("validate-cluster-health.sh", ["--bogus"], "unknown option --bogus"),
            ("rollback-updates.sh", [], "give --to-previous, or --component k3s --to-version VERSION"),
            ("rollback-updates.sh", ["--to-previous", "--component", "k3s"], "give it alone"),
            ("rollback-updates.sh", ["--component", "k3s"], "needs --to-version VERSION"),
            ("rollback-updates.sh", ["--component", "longhorn", "--to-version", "v1.7.2"], "Longhorn cannot be downgraded"),
            ("rollback-updates.sh", ["--component", "flux", "--to-version", "v2.4.0"], "Flux cannot be downgraded"),
            ("emergency-recovery.sh", [], "give --restore-from-backup"),
            ("emergency-recovery.sh", ["--restore-from-backup", "--agent"], "--agent needs a value"),
            ("update-history.sh", ["--last-7-days"], "unknown option --last-7-days"),
            ("update-report.sh", ["--format", "docx"], "write md, json, html or pdf"),
            ("update-report.sh", ["--monthly", "--month"], "--month needs a value"),
            ("update-metrics.sh", ["--prometheus-query", "up", "--output", "m.prom"], "--output goes without --prometheus-query"),
            ("update-metrics.sh", ["--json"], "--json goes with --prometheus-query"),
            ("update-metrics.sh", ["--prometheus-query"], "--prometheus-query needs a value"),
        ]
        for (name, arguments, message) in refusals {
            let result = try Self.run(name, arguments)
            let shown = "\(name) \(arguments.joined(separator: " ")): exit \(result.status): \(result.output)\(result.error)"
            #expect(result.status == 2, "\(shown)")
            #expect(result.error.hasPrefix("\(name): ") && result.error.contains(message), "\(shown)")
            #expect(!result.error.contains("/nonexistent/upkeep.yaml"), "upkeep ran: \(shown)")
        }
    }

    /// `--config FILE` reaches upkeep: a missing file is upkeep's own refusal, naming it.
    @Test func theConfigurationIsPassedOnToUpkeep() throws {
        for (name, arguments) in [("check-updates.sh", [String]()), ("update-history.sh", []), ("update-report.sh", ["--since", "30d"]),
                                  ("update-report.sh", ["--monthly", "--month", "2026-11", "--format", "pdf", "--paper", "letter", "--output", "/tmp/r.pdf"]),
                                  ("update-metrics.sh", []), ("update-metrics.sh", ["--prometheus-query", "up", "--json"]), ("rollback-updates.sh", ["--component", "k3s", "--to-version", "v1.31.4+k3s1"]),
                                  ("emergency-recovery.sh", ["--restore-from-backup", "b1"]), ("apply-updates.sh", ["--component", "k3s"]),
                                  ("apply-updates.sh", ["--component", "flux", "--to", "v2.5.1", "--emergency"]),
                                  ("apply-updates.sh", ["--all", "--channel", "stable", "--emergency", "--yes"]),
                                  ("maintenance-mode.sh", ["--enable", "--reason", "kernel", "--notify-users"]), ("maintenance-mode.sh", ["--status"]),
                                  ("maintenance-mode.sh", ["--disable"]), ("validate-cluster-health.sh", []),
                                  ("validate-cluster-health.sh", ["--flux", "--storage", "--networking", "--applications", "--json"]), ("validate-cluster-health.sh", ["--all"]),
                                  ("validate-cluster-health.sh", ["--post-update", "--json"])] {
            let result = try Self.run(name, ["--config", "/nonexistent/other.yaml"] + arguments)
            #expect(result.status == 2 && result.error.contains("/nonexistent/other.yaml"), "\(name): exit \(result.status): \(result.output)\(result.error)")
        }
    }
}
