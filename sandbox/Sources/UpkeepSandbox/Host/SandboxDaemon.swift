import Foundation
import UpkeepCore
import UpkeepPOSIX
import UpkeepProcess

/// The background process behind `upkeep sandbox up`: started in its own session, it runs a
/// `SandboxRunner` until SIGTERM or SIGINT, applies `faults.json` while it runs, and reports
/// its progress in `DIR/sandbox.state` (`starting`, `ready`, `failed` with the reason).
///
/// Files in DIR: `sandbox.pid` (this process, while it runs), `sandbox.state`, `sandbox.log`
/// (its output), `sandbox-options.json` (what `up` asked for).
public enum SandboxDaemon {
    public struct State: Codable, Sendable, Equatable {
        /// `starting`, `ready` or `failed`.
        public var state: String
        public var pid: Int32
        public var message: String?
    }

    public static func pidFile(_ directory: String) -> String { "\(directory)/sandbox.pid" }
    public static func stateFile(_ directory: String) -> String { "\(directory)/sandbox.state" }
    public static func logFile(_ directory: String) -> String { "\(directory)/sandbox.log" }
    public static func optionsFile(_ directory: String) -> String { "\(directory)/sandbox-options.json" }
    /// How often the running sandbox re-reads faults and looks after its agents.
    static let tendIntervalNanoseconds: UInt64 = 250_000_000

    /// The pid of the sandbox process running for `directory`, if one does.
    public static func runningPID(_ directory: String) -> pid_t? {
        for candidate in [(try? String(contentsOfFile: pidFile(directory), encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) },
                          (try? SandboxManifest.load(directory: directory))?.pid]
        {
            if let pid = candidate, pid > 0, pid != getpid(), Spawn.isAlive(pid) { return pid }
        }
        return nil
    }

    /// Starts the background process for `options` and waits (bounded) until the sandbox is
    /// Ready; on failure the process is stopped and its reason (or its log's end) thrown.
    public static func launch(_ options: SandboxOptions) async throws -> SandboxManifest {
        let directory = options.directory
        if let pid = runningPID(directory) {
            throw SandboxError("a sandbox already runs in \(directory) (pid \(pid)); run `upkeep sandbox down --dir \(directory)` first")
        }
        guard FileManager.default.isExecutableFile(atPath: options.hostBinary) else {
            throw SandboxError("the sandbox program \(options.hostBinary) is missing; build it (swift build)")
        }
        if let agent = options.agentBinary, !FileManager.default.isExecutableFile(atPath: agent) {
            throw SandboxError("the agent binary \(agent) is missing; build it (swift build) or pass --no-agents")
        }
        if (try? SandboxManifest.load(directory: directory)) != nil {
            // A sandbox whose process was killed: its nodes may still run and would never
            // report to the new API. Clean up first, as `down` would.
            _ = try await SandboxRunner.down(directory: directory)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        unlink(stateFile(directory))
        unlink("\(directory)/faults.json")  // a new sandbox starts without the last one's faults
        try JSONFiles.write(options, to: optionsFile(directory))
        let pid = try Spawn.detached([options.hostBinary, "serve", directory], environment: PosixSpawn.inheritedEnvironment(),
                                     logFile: logFile(directory))
        let deadline = Date().addingTimeInterval(options.readyTimeoutSeconds + 30)
        while Date() < deadline {
            if let state = try? JSONFiles.read(State.self, from: stateFile(directory)), state.pid == pid {
                if state.state == "ready" { return try SandboxManifest.load(directory: directory) }
                if state.state == "failed" {
                    _ = await ProcessRun.reap(pid, timeoutSeconds: 30)
                    throw SandboxError("the sandbox did not start: \(state.message ?? "no reason given"); see \(logFile(directory))")
                }
            }
            if let status = await ProcessRun.reap(pid, timeoutSeconds: 0) {
                throw SandboxError("the sandbox process exited (status \(WaitStatus(status).shellCode)) before it was ready:\n\(logTail(directory))")
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        _ = try? await SandboxRunner.down(directory: directory)
        throw SandboxError("the sandbox was not ready within \(Int(options.readyTimeoutSeconds + 30)) s and was stopped:\n\(logTail(directory))")
    }

    static func logTail(_ directory: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logFile(directory), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// The background process's main: `upkeep-sandbox serve DIR`.
    public static func serve(directory: String) async -> Int32 {
        // Signals are turned into events before anything starts, so a `down` during the start
        // still tears everything down once the start has finished (or failed; both are bounded).
        signal(SIGHUP, SIG_IGN)
        let stopSignal = Signals.listen(for: [SIGTERM, SIGINT])
        let pid = getpid()
        func report(_ state: String, _ message: String? = nil) {
            try? JSONFiles.write(State(state: state, pid: pid, message: message), to: stateFile(directory))
        }
        let options: SandboxOptions
        do {
            options = try JSONFiles.read(SandboxOptions.self, from: optionsFile(directory))
            try JSONFiles.atomicWrite(Data("\(pid)\n".utf8), to: pidFile(directory))
        } catch {
            report("failed", "\(error)")
            return 1
        }
        report("starting")
        let runner: SandboxRunner
        do {
            runner = try await SandboxRunner.start(options)
        } catch {
            report("failed", "\(error)")
            unlink(pidFile(directory))
            return 1
        }
        report("ready")
        print("sandbox ready in \(directory): API \(runner.apiURL), releases \(runner.releaseURL)")
        let tending = Task {
            while !Task.isCancelled {
                await runner.tend()
                try? await Task.sleep(nanoseconds: tendIntervalNanoseconds)
            }
        }
        let signal = await stopSignal()
        print("signal \(signal): stopping the sandbox")
        tending.cancel()
        _ = await tending.value
        await runner.stop()
        unlink(stateFile(directory))
        unlink(pidFile(directory))
        print("sandbox stopped")
        return 0
    }
}
