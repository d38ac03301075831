import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox
import UpkeepTestSupport

/// The repository, found from this source file.
private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// docs/operations.md as a test: every `sh` block runs, in order, against one sandbox, with the
/// built binaries and `deploy/scripts` on the path (docs/operations.md, "This guide is tested").
@Suite(.serialized, .timeLimit(.minutes(10)))
struct OperationsGuideTests {
    /// What a `<!-- sandbox: ACTION -->` comment does before its block: the situation the block
    /// is about, made in the sandbox.
    enum SandboxAction: Equatable {
        /// `upkeep sandbox fault --dir DIR WORDS…` (`fault agent-1 unhealthy`, `fault releases clear`).
        case fault([String])
        /// `fault NODE clear`.
        case clear(String)
        /// `systemctl stop` of the node's k3s unit, through the node's systemctl.
        case stopK3s(String)
        /// What `upkeep-agent join --force` and `systemctl restart upkeep-agent` do on a real
        /// node: a token for the node from the sandbox's join server, the join with the node's
        /// sandbox paths, and the agent restarted on its new files.
        case enroll(String)

        init(_ text: String) throws {
            let words = text.split(separator: " ").map(String.init)
            switch (words.first, words.count) {
            case ("fault", 3...): self = .fault(Array(words.dropFirst()))
            case ("clear", 2): self = .clear(words[1])
            case ("stop-k3s", 2): self = .stopK3s(words[1])
            case ("enroll", 2): self = .enroll(words[1])
            default: throw EndToEndFailure("unknown sandbox action \"\(text)\" (fault WORDS…, clear NODE, stop-k3s NODE, enroll NODE)")
            }
        }
    }

    @Test func theGuidesBlocksAreFoundWithTheirDirectives() throws {
        let markdown = """
            Intro.

            <!-- exit: 10 -->
            <!-- expect: Updates -->
            <!-- sandbox: fault agent-1 unhealthy -->
            ```sh
            check-updates.sh --all
            ```

            <!-- not-run: on a node -->
            ```sh
            systemctl restart upkeep-agent
            ```

            ```yaml
            policy: {concurrency: 1}
            ```

            <!-- an ordinary comment -->
              ```sh
              upkeep status
              ```
            """
        let blocks = try OperationsGuide.blocks(markdown)
        #expect(blocks == [
            GuideBlock(line: 6, text: "check-updates.sh --all\n", expects: ["Updates"], exitCode: 10, sandbox: ["fault agent-1 unhealthy"]),
            GuideBlock(line: 11, text: "systemctl restart upkeep-agent\n", notRun: "on a node"),
            GuideBlock(line: 20, text: "upkeep status\n"),
        ])
    }

    /// Each way a shell block could be skipped silently, or a directive lost, is refused.
    @Test func aBlockThatWouldBeSkippedOrADirectiveThatWouldBeLostIsRefused() {
        let refused: [(String, String)] = [
            ("```bash\nupkeep status\n```\n", "a ```bash block"),
            ("```\nupkeep status\n```\n", "a ``` block"),
            ("```console\n$ upkeep status\n```\n", "a ```console block"),
            ("<!-- expect: x -->\n```yaml\na: 1\n```\n", "expect above a yaml block"),
            ("<!-- expect: x -->\n\n```sh\nupkeep status\n```\n", "expect is not followed by a ```sh block"),
            ("<!-- expect: x -->", "expect at the end"),
            ("<!-- expect: x -->\n", "expect is not followed"),
            ("<!-- expects: x -->\n```sh\nupkeep status\n```\n", "unknown directive expects"),
            ("<!-- exit: ten -->\n```sh\nupkeep status\n```\n", "exit: ten is not an exit code"),
            ("<!-- not-run: x -->\n<!-- expect: y -->\n```sh\nupkeep status\n```\n", "a not-run block with other directives"),
            ("<!-- not-run: -->\n```sh\nupkeep status\n```\n", "not-run without a value"),
            ("```sh\nupkeep status\n", "never closed"),
        ]
        for (markdown, message) in refused {
            #expect(throws: OperationsGuide.Refusal.self, "\(markdown)") { try OperationsGuide.blocks(markdown) }
            do {
                _ = try OperationsGuide.blocks(markdown)
            } catch {
                #expect(error.message.contains(message), "\(markdown) → \(error)")
            }
        }
    }

    @Test func upkeepPathsMoveUnderTheTestsRootAndNoOtherPath() {
        let text = "tar -czf x.tgz /etc/upkeep /var/lib/upkeep; sqlite3 /var/lib/upkeep/upkeep.db \".backup /var/lib/upkeep/c.db\"\n"
            + "cat /etc/upkeep-other /var/lib/upkeep-agent/journal.jsonl /usr/share/upkeep/scripts x/etc/upkeep"
        #expect(OperationsGuide.rooted(text, under: "/R") == "tar -czf x.tgz /R/etc/upkeep /R/var/lib/upkeep; sqlite3 /R/var/lib/upkeep/upkeep.db \".backup /R/var/lib/upkeep/c.db\"\n"
                + "cat /etc/upkeep-other /var/lib/upkeep-agent/journal.jsonl /usr/share/upkeep/scripts x/etc/upkeep")
    }

    @Test func everyCommandBlockOfTheOperationsGuideRunsAgainstOneSandbox() async throws {
        let blocks = try OperationsGuide.blocks(String(contentsOfFile: "\(repository)/docs/operations.md", encoding: .utf8))
        let actions = try blocks.flatMap(\.sandbox).map(SandboxAction.init)
        #expect(!actions.isEmpty)
        let upkeep = try UpkeepBinary.path()
        // A CA of the default lifetime, as `upkeep pki init` makes on a real controller (the
        // sandbox's own lasts 31 days, shorter than a renewed certificate's default 365).
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start, join: true, prepare: { directory in
            let initialized = try await ProcessRun.run(upkeep, ["pki", "init", "--dir", "\(directory)/pki"], timeoutSeconds: 60)
            try #require(initialized.status == 0, "upkeep pki init failed: \(initialized.output)")
        }) { sandbox in
            let guide = try GuideRun(sandbox: sandbox)
            var skipped: [GuideBlock] = []
            for block in blocks {
                if block.notRun != nil {
                    skipped.append(block)
                    continue
                }
                for action in block.sandbox { try await guide.perform(try SandboxAction(action)) }
                let started = Date()
                let outcome = try await guide.run(block)
                print("docs/operations.md:\(block.line): exit \(outcome.status) after \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
                let shown = "docs/operations.md:\(block.line):\n\(block.text)exit \(outcome.status)\(outcome.timedOut ? " (timed out)" : ""):\n\(outcome.output)"
                try #require(!outcome.timedOut && outcome.status == block.exitCode, "expected exit \(block.exitCode): \(shown)")
                for expected in block.expects {
                    try #require(outcome.output.contains(expected), "the output lacks \"\(expected)\": \(shown)")
                }
            }
            print("docs/operations.md: \(blocks.count - skipped.count) blocks ran, \(skipped.count) not run:")
            for block in skipped { print("  line \(block.line): \(block.notRun ?? "")") }
            #expect(skipped.count < blocks.count / 4, "most of the guide should run: \(skipped.count) of \(blocks.count) not run")
        }
    }
}

/// Where the guide's blocks run: `/etc/upkeep` and `/var/lib/upkeep` are `DIR/root/…` (the
/// sandbox's CA and controller identity copied there, an `upkeep.yaml` for the sandbox with the
/// end-to-end policy), `UPKEEP_CONFIG` and `KUBECONFIG` name the sandbox's, the built binaries
/// and `deploy/scripts` come first on the path, and each block starts in `DIR/work`.
struct GuideRun {
    let sandbox: EndToEndSandbox
    let root: String
    let work: String
    let environment: [String: String]
    static let blockSeconds = 300.0

    init(sandbox: EndToEndSandbox) throws {
        self.sandbox = sandbox
        root = "\(sandbox.directory)/root"
        work = "\(sandbox.directory)/work"
        let etc = "\(root)/etc/upkeep"
        for directory in [etc, "\(root)/var/lib", work] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let copied = try runProcess("cp", ["-a", "\(sandbox.directory)/pki", "\(etc)/pki"], timeoutSeconds: 30)
        try #require(copied.status == 0, "cp -a pki failed: \(copied.output)\(copied.error)")
        let config = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            .replacingOccurrences(of: "\(sandbox.directory)/pki/", with: "\(etc)/pki/")
            .replacingOccurrences(of: "stateDir: \(sandbox.directory)/state", with: "stateDir: \(root)/var/lib/upkeep")
        try #require(config.contains("stateDir: \(root)/var/lib/upkeep") && config.contains("ca: \(etc)/pki/ca.crt"), "unexpected config:\n\(config)")
        try config.write(toFile: "\(etc)/upkeep.yaml", atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        let binaries = (sandbox.upkeep as NSString).deletingLastPathComponent
        environment["PATH"] = "\(binaries):\(repository)/deploy/scripts:\(environment["PATH"] ?? "/usr/bin:/bin")"
        environment["UPKEEP_CONFIG"] = "\(etc)/upkeep.yaml"
        environment["KUBECONFIG"] = "\(sandbox.directory)/kubeconfig"
        environment["UPKEEP_STATE_DIR"] = nil
        self.environment = environment
    }

    /// `bash -euo pipefail` on the block's text, with the upkeep paths under `root`.
    func run(_ block: GuideBlock) async throws -> ProcessRun.Outcome {
        let script = "cd \(work)\n" + OperationsGuide.rooted(block.text, under: root)
        return try await ProcessRun.run("/bin/bash", ["-euo", "pipefail", "-c", script], environment: environment, timeoutSeconds: Self.blockSeconds)
    }

    func perform(_ action: OperationsGuideTests.SandboxAction) async throws {
        switch action {
        case .fault(let words): try await sandbox.fault(words)
        case .clear(let node): try await sandbox.fault([node, "clear"])
        case .stopK3s(let name):
            let node = try self.node(name)
            let stopped = try await ProcessRun.run(node.systemctl, ["stop", node.unit], timeoutSeconds: 60)
            try #require(stopped.status == 0, "systemctl stop \(node.unit) on \(name) failed: \(stopped.output)")
        case .enroll(let name):
            let node = try self.node(name)
            let log = (try? String(contentsOfFile: SandboxEnrollment.logFile(sandbox.directory), encoding: .utf8)) ?? ""
            let marker = "join server listening on "
            let address = try #require(log.range(of: marker).flatMap { log[$0.upperBound...].split(separator: ",").first.map(String.init) },
                                       "the sandbox's join server does not say where it listens: \(log)")
            let created = try await ProcessRun.run(sandbox.upkeep, ["token", "create", "--config", "\(sandbox.directory)/upkeep.yaml", "--node", name,
                                                                    "--ttl", "10m", "--controller", address], timeoutSeconds: 30)
            let words = created.output.split(whereSeparator: \.isWhitespace).map(String.init)
            let token = try #require(words.firstIndex(of: "--token").map { words[$0 + 1] }, "token create: \(created.output)")
            let caHash = try #require(words.firstIndex(of: "--ca-hash").map { words[$0 + 1] }, "token create: \(created.output)")
            let agent = ((sandbox.upkeep as NSString).deletingLastPathComponent as NSString).appendingPathComponent("upkeep-agent")
            let joined = try await ProcessRun.run(agent, ["join", "--controller", address, "--token", token, "--ca-hash", caHash, "--root", node.root,
                                                          "--listen", node.agentAddress, "--systemctl", node.systemctl, "--probe-host", node.address,
                                                          "--no-start", "--force"] + (node.clusterDNS.map { ["--cluster-dns", $0] } ?? []),
                                          timeoutSeconds: 60)
            try #require(joined.status == 0, "upkeep-agent join on \(name) failed: \(joined.output)")
            try await sandbox.fault([name, "agent-down"])
            try await sandbox.fault([name, "clear"])
        }
    }

    func node(_ name: String) throws -> SandboxNode {
        try #require(sandbox.manifest.nodes.first { $0.name == name }, "no node \(name) in the sandbox")
    }
}
