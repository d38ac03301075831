import Foundation
import Testing
import UpkeepFleet
import UpkeepKube
import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepTestSupport

/// Issue 19, item 5: with stdout and stderr sent to one file (`>log 2>&1`, as systemd, cron
/// and CI do), an error follows the lines printed before it. stdout is buffered when it is a
/// file and stderr is not, so without the flush before each stderr line the error lands first.
@Suite struct OutputOrderTests {
    /// `upkeep agents` against the sandbox's simulated API, every node's agent at a closed port:
    /// the table (stdout) first, then the refusal (stderr), in one file written by the shell.
    @Test func anErrorAfterPrintedLinesComesAfterThemInOneFile() async throws {
        let directory = try TemporaryDirectory()
        let upkeep = try UpkeepBinary.path()
        let pki = directory.file("pki")
        for arguments in [["pki", "init", "--dir", pki], ["pki", "issue", "controller", "--dir", pki]] {
            let made = try UpkeepBinary.run(arguments)
            try #require(made.status == 0, "upkeep \(arguments.joined(separator: " ")): \(made.error)")
        }
        let spec = ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1)
        let api = try await SandboxAPI(spec: spec)
        do {
            // Port 1 on loopback: refused at once, so every agent is unreachable without a wait.
            for node in spec.nodeNames {
                _ = try await api.client.patch(.nodes, node, ["metadata": ["annotations": [InventoryMapping.agentAddressAnnotation: "127.0.0.1:1"]]])
            }
            let config = try directory.write("""
                kubeconfig: \(api.kubeconfig)
                stateDir: \(directory.file("state"))
                pki: {ca: \(pki)/ca.crt, certificate: \(pki)/controllers/controller.crt, key: \(pki)/controllers/controller.key}
                """, to: "upkeep.yaml")
            let log = directory.file("agents.log")
            let run = try runProcess("/bin/sh", ["-c", #"exec "$0" --config "$1" agents >"$2" 2>&1"#, upkeep, config, log], timeoutSeconds: 60)
            #expect(run.status == 5, "upkeep agents should refuse (exit 5): \(run.output)\(run.error)")
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
            let error = try #require(lines.firstIndex { $0.hasPrefix("Error: ") }, "no error line:\n\(lines.joined(separator: "\n"))")
            let rows = lines.indices.filter { index in spec.nodeNames.contains { lines[index].hasPrefix($0 + " ") } }
            #expect(rows.count == 3 && lines[error].contains("3 of 3 agents are not fit"), "\(lines.joined(separator: "\n"))")
            #expect(error == lines.count - 1 && rows.allSatisfy { $0 < error },
                    "the error is not after the table it follows:\n\(lines.joined(separator: "\n"))")
        } catch {
            await api.close()
            throw error
        }
        await api.close()
    }
}
