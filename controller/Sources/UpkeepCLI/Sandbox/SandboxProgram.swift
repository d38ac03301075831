import Foundation
import UpkeepProcess

/// The sandbox program, `upkeep-sandbox`, which `upkeep sandbox …` and `upkeep demo` run. The
/// simulator is a program of its own so that the production `upkeep` does not link it
/// (scripts/check-links); SwiftPM builds it beside `upkeep`, and an installed package ships it there.
enum SandboxProgram {
    static let name = "upkeep-sandbox"

    /// `upkeep-sandbox` is not beside `upkeep`.
    struct Missing: Error, Equatable, CustomStringConvertible {
        let path: String
        var description: String {
            "\(path) is missing: `upkeep sandbox` and `upkeep demo` run the sandbox program installed beside upkeep. "
                + "In a source checkout, build it with `swift build` (it builds upkeep, upkeep-agent and \(SandboxProgram.name)); "
                + "an installed package ships it beside upkeep"
        }
    }

    /// Where it must be: beside the running `upkeep` executable.
    static var path: String {
        let upkeep = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (upkeep as NSString).deletingLastPathComponent + "/" + name
    }

    static func located() throws(Missing) -> String {
        let path = path
        guard FileManager.default.isExecutableFile(atPath: path) else { throw Missing(path: path) }
        return path
    }

    /// Replaces this process with the sandbox program and `arguments`: what it prints and its
    /// exit code are the command's. Returns (throwing) only when it could not be started.
    static func replaceProcess(arguments: [String]) throws -> Never {
        let path = try located()
        fflush(nil)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        execv(path, argv)
        let reason = String(cString: strerror(errno))
        throw CommandFailure(code: 1, message: "\(path) could not be started: \(reason)")
    }

    /// Runs the sandbox program to its end (at most `timeoutSeconds`) and returns what it printed;
    /// a failure throws what it said.
    static func run(_ arguments: [String], timeoutSeconds: Double) async throws -> String {
        let outcome = try await ProcessRun.run(try located(), arguments, timeoutSeconds: timeoutSeconds)
        var output = outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard outcome.status == 0, !outcome.timedOut else {
            if output.hasPrefix("Error: ") { output.removeFirst("Error: ".count) }
            let ending = outcome.timedOut ? "did not finish within \(Int(timeoutSeconds)) s" : "failed (exit \(outcome.status))"
            throw CommandFailure(code: 1, message: "upkeep sandbox \(arguments.first ?? "") \(ending): \(output)")
        }
        return output
    }

    /// What the controller reads of `DIR/sandbox.json`, which `upkeep sandbox up` writes (docs/sandbox.md).
    struct Manifest: Decodable, Equatable {
        struct Node: Decodable, Equatable {
            var name: String
            var address: String
        }

        var kubeconfig: String
        var k3sVersion: String
        var nodes: [Node]

        static func load(directory: String) throws -> Manifest {
            let path = "\(directory)/sandbox.json"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CommandFailure(code: 1, message: "cannot read \(path), which `upkeep sandbox up` writes")
            }
            do {
                return try JSONDecoder().decode(Manifest.self, from: data)
            } catch {
                throw CommandFailure(code: 1, message: "\(path) is not a sandbox description: \(error)")
            }
        }
    }
}
