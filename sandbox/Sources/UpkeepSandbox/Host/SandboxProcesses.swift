import Foundation

extension SandboxDaemon {
    /// Every process a sandbox in `directory` recorded: its own, the unit supervisors, k3s,
    /// the agents and the join server (`--join`). Tests check that none of them survives `sandbox down`.
    public static func recordedPIDs(_ directory: String) -> Set<pid_t> {
        var pids: Set<pid_t> = []
        if let text = try? String(contentsOfFile: pidFile(directory), encoding: .utf8),
           let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { pids.insert(pid) }
        for node in (try? SandboxManifest.load(directory: directory))?.nodes ?? [] {
            let state = SystemctlStandIn.currentState(node)
            pids.formUnion([state.supervisorPID, state.mainPID].filter { $0 > 0 })
            if let pid = agentPID(node) { pids.insert(pid) }
            if let pid = etcdPID(node) { pids.insert(pid) }
        }
        if let text = try? String(contentsOfFile: SandboxEnrollment.pidFile(directory), encoding: .utf8),
           let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { pids.insert(pid) }
        return pids
    }

    /// The pid of `node`'s etcd member, from its pid file (nil when it runs none).
    public static func etcdPID(_ node: SandboxNode) -> pid_t? {
        guard let text = try? String(contentsOfFile: node.etcdPIDFile, encoding: .utf8) else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The pid `node`'s upkeep-agent runs as, from its pid file (nil when stopped).
    public static func agentPID(_ node: SandboxNode) -> pid_t? {
        guard let text = try? String(contentsOfFile: node.agentPIDFile, encoding: .utf8) else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
