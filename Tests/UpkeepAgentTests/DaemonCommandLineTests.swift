import Testing
import UpkeepAgent
import UpkeepTestSupport

/// The daemon's command line is read without ArgumentParser only in the forms systemd and the
/// sandbox give; everything else reaches ArgumentParser, so help and errors stay its own.
@Suite struct DaemonCommandLineTests {
    @Test(arguments: [
        ([], AgentConfig.defaultPath),
        (["run"], AgentConfig.defaultPath),
        (["run", "--config", "/etc/upkeep/a.yaml"], "/etc/upkeep/a.yaml"),
        (["run", "--config=/etc/upkeep/a.yaml"], "/etc/upkeep/a.yaml"),
        (["--config", "relative.yaml"], "relative.yaml"),
        (["--config=/b.yaml"], "/b.yaml"),
    ])
    func readsTheDaemonsOwnForms(_ arguments: [String], _ path: String) {
        #expect(DaemonCommandLine.configPath(arguments) == path)
    }

    @Test(arguments: [
        ["--help"], ["-h"], ["run", "--help"], ["run", "-h"], ["--version"], ["version"], ["probe"], ["status", "--config", "/a.yaml"],
        ["run", "--config"], ["run", "--config="], ["run", "--config", "--help"], ["run", "--config", "/a.yaml", "--bogus"],
        ["run", "run"], ["run", "/a.yaml"], ["local", "status"],
    ])
    func leavesEverythingElseToArgumentParser(_ arguments: [String]) {
        #expect(DaemonCommandLine.configPath(arguments) == nil)
    }

    /// The real binary: a configuration that cannot be read is reported the same way whichever
    /// reader took the command line, and what only ArgumentParser reads still gets its errors.
    @Test func theBinaryAnswersAsArgumentParserWould() throws {
        let binary = try AgentBinary.path()
        let missing = "/nonexistent/upkeep-agent-test.yaml"
        let fast = try runProcess(binary, ["run", "--config", missing])
        let equals = try runProcess(binary, ["run", "--config=\(missing)"])
        #expect(fast.status == 64 && equals.status == 64)
        #expect(fast.error.contains("\(missing): (file): cannot be read"), "\(fast.error)")
        #expect(fast.error == equals.error)
        let unknown = try runProcess(binary, ["run", "--config", missing, "--bogus"])
        #expect(unknown.status == 64)
        #expect(unknown.error.contains("Unknown option '--bogus'"), "\(unknown.error)")
        let help = try runProcess(binary, ["run", "--help"])
        #expect(help.status == 0 && help.output.contains("--config <config>"), "\(help.output)")
    }
}
