import ArgumentParser
import Foundation

/// `upkeep rehearse`: the plan run on a sandbox twin of the live cluster, read-only on the live side.
struct Rehearse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the rollout on a sandbox twin of the live cluster first: timings, held drains, rollbacks (changes nothing live).",
        discussion: """
            Reads the live cluster with GET and LIST only (nodes, pods, budgets, Longhorn, Flux), starts a sandbox twin of it \
            (upkeep-sandbox up --twin), and runs the plan `upkeep apply` would make there with the real engine and the twin's \
            real agents; its own state database is in the twin's directory. Reports each node's predicted start and end, the \
            total against the next maintenance window, every drain a disruption budget holds, the volumes that shape the order \
            and each hop's rollback kind. docs/rehearse.md.

            Exit codes: 0 the rehearsal completed, 1 a node failed and the twin was rolled back, 2 usage, 3 blocked (a drain \
            held, a gate, an agent), 4 failed without a full rollback, 5 no safe plan, 7 a binary could not be fetched, \
            8 the live cluster or the release source could not be read, 10 done but unhealthy afterwards. With --drill: \
            0 every drilled node's failure was rolled back, 4 one was not.
            """
    )

    @OptionGroup var configOption: ConfigOption
    @OptionGroup var target: TargetOptions

    @Option(name: .long, help: "Run the twin's modelled steps (pod start and termination, replica rebuild) N times faster (1 to 100).")
    var speed = 10.0

    @Option(name: .customLong("rebuild-seconds"), help: "How long a Longhorn replica takes to rebuild after its node returns, on the live cluster.")
    var rebuildSeconds = RehearsalRun.StepTimes().rebuildSeconds

    @Option(name: .customLong("pod-start-seconds"), help: "How long a rescheduled pod takes to turn Ready, on the live cluster.")
    var podStartSeconds = RehearsalRun.StepTimes().podStartSeconds

    @Option(name: .customLong("pod-termination-seconds"), help: "How long an evicted pod takes to stop, on the live cluster.")
    var podTerminationSeconds = RehearsalRun.StepTimes().podTerminationSeconds

    @Flag(name: .long, help: "Fail the new k3s on each node in turn (or on the --fail nodes) and report each rollback.")
    var drill = false

    @Option(name: .customLong("fail"), help: ArgumentHelp("With --drill: only these nodes' new k3s fails (repeatable).", valueName: "NODE"))
    var failNodes: [String] = []

    @Option(name: .long, help: ArgumentHelp("Keep the capture, the twin (running) and its logs in DIR: `kubectl --kubeconfig DIR/twin/kubeconfig`.",
                                            valueName: "DIR"))
    var keep: String?

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    func validate() throws {
        guard (1...100).contains(speed) else { throw ValidationError("--speed must be between 1 and 100") }
        if !failNodes.isEmpty && !drill { throw ValidationError("--fail goes with --drill") }
        for (flag, value) in [("--rebuild-seconds", rebuildSeconds), ("--pod-start-seconds", podStartSeconds),
                              ("--pod-termination-seconds", podTerminationSeconds)] where !(0...3600).contains(value) {
            throw ValidationError("\(flag) must be between 0 and 3600 seconds")
        }
    }

    func run() async throws {
        let config = try configOption.load()
        let steps = RehearsalRun.StepTimes(rebuildSeconds: rebuildSeconds, podStartSeconds: podStartSeconds,
                                           podTerminationSeconds: podTerminationSeconds)
        let report = try await RehearsalRun(config: config, target: target, speed: speed, steps: steps,
                                            drill: drill ? .init(nodes: failNodes) : nil, keep: keep).run()
        print(output == .json ? try jsonText(report) : report.text(), terminator: "")
        if report.exitCode != 0 { throw CommandFailure(code: report.exitCode, message: report.reason ?? "the rehearsal did not complete") }
    }
}
