import Foundation
import Testing
import UpkeepTestSupport

/// `upkeep sandbox …` runs the sandbox program `upkeep-sandbox` beside `upkeep` with the same
/// arguments: the help, usage errors and exit codes a user sees are the ones the command line had
/// inside `upkeep`, and a missing program is named with what to do. (Sandboxes brought up and
/// down through it: Tests/UpkeepSandboxTests/SandboxCLITests, the end-to-end tests.)
@Suite struct SandboxCommandTests {
    static var sandboxProgram: String {
        get throws { (try UpkeepBinary.path() as NSString).deletingLastPathComponent + "/upkeep-sandbox" }
    }

    @Test func helpComesFromTheSandboxProgramUnderUpkeepsName() throws {
        let help = try UpkeepBinary.run("sandbox", "--help")
        #expect(help.status == 0, "\(help.error)")
        #expect(help.output.contains("USAGE: upkeep sandbox <subcommand>"), "\(help.output)")
        for line in ["up   ", "status   ", "fault   ", "down   ", "--version"] {
            #expect(help.output.contains(line), "\(line) in \(help.output)")
        }
        let direct = try runProcess(try Self.sandboxProgram, ["--help"])
        #expect(direct.status == 0 && direct.output == help.output)
        let bare = try UpkeepBinary.run("sandbox")
        #expect(bare.status == 0 && bare.output == help.output)

        let up = try UpkeepBinary.run("sandbox", "up", "--help")
        #expect(up.status == 0 && up.output.contains("USAGE: upkeep sandbox up --dir <DIR> [--servers <servers>]"), "\(up.output)")
        let hidden = try UpkeepBinary.run("sandbox", "up", "--help-hidden")
        #expect(hidden.output.contains("--pod-start-seconds") && hidden.output.contains("--pod-termination-seconds")
                && hidden.output.contains("--airgap <NODE,…>"), "\(hidden.output)")
        let helpUp = try UpkeepBinary.run("help", "sandbox", "up")
        #expect(helpUp.status == 0 && helpUp.output == up.output)
        // Listed among upkeep's own commands.
        let root = try UpkeepBinary.run("--help")
        #expect(root.output.contains("  sandbox ") && root.output.contains("Run a sandbox k3s cluster"), "\(root.output)")
    }

    @Test func usageErrorsExitTwoAndFailuresExitOneAsUpkeepsCommandsDo() throws {
        let directory = try TemporaryDirectory()
        let invalid = try UpkeepBinary.run("sandbox", "up", "--dir", directory.file("sbx"), "--servers", "0")
        #expect(invalid.status == 2, "\(invalid.output)\(invalid.error)")
        #expect(invalid.error.contains("Error: a cluster needs at least one server"), "\(invalid.error)")
        #expect(invalid.error.contains("Usage: upkeep sandbox up --dir <DIR>"), "\(invalid.error)")
        let unknown = try UpkeepBinary.run("sandbox", "help")
        #expect(unknown.status == 2 && unknown.error.contains("Unexpected argument 'help'"), "\(unknown.error)")

        let status = try UpkeepBinary.run("sandbox", "status", "--dir", directory.file("none"))
        #expect(status.status == 1 && status.output.contains("no sandbox runs in \(directory.file("none"))"), "\(status.output)")
        let fault = try UpkeepBinary.run("sandbox", "fault", "--dir", directory.file("none"), "agent-1", "unhealthy")
        #expect(fault.status == 1 && fault.error.contains("Error: no sandbox in \(directory.file("none"))"), "\(fault.error)")
        let down = try UpkeepBinary.run("sandbox", "down", "--dir", directory.file("none"))
        #expect(down.status == 0 && down.output == "no sandbox runs in \(directory.file("none"))\n", "\(down.output)")
    }

    @Test func withoutTheSandboxProgramBesideItUpkeepSaysWhatToDo() throws {
        // `upkeep` alone in a directory of the build tree (a hard link: same file system, no copy).
        let build = (try UpkeepBinary.path() as NSString).deletingLastPathComponent
        let alone = "\(build)/upkeep-alone-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: alone) }
        if link(try UpkeepBinary.path(), "\(alone)/upkeep") != 0 {
            try FileManager.default.copyItem(atPath: try UpkeepBinary.path(), toPath: "\(alone)/upkeep")
        }
        let scratch = try TemporaryDirectory()
        for arguments in [["sandbox", "up", "--dir", scratch.file("sbx")], ["sandbox", "--help"], ["demo", "--dir", scratch.file("demo")]] {
            let result = try runProcess("\(alone)/upkeep", arguments)
            #expect(result.status == 1, "\(arguments): \(result.output)\(result.error)")
            #expect(result.error.contains("Error: \(alone)/upkeep-sandbox is missing"), "\(arguments): \(result.error)")
            #expect(result.error.contains("build it with `swift build`") && result.error.contains("an installed package ships it beside upkeep"),
                    "\(arguments): \(result.error)")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("sbx")), "nothing was started")
    }
}
