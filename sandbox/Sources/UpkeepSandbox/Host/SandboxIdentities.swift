import Foundation
import UpkeepPKI

/// The files a sandbox hands to Upkeep itself: the cluster PKI (`DIR/pki`, as `upkeep pki`
/// lays it out: CA, one agent identity per node, the controller identity `upkeep`) and the
/// controller's `DIR/upkeep.yaml`.
///
/// A PKI already in DIR (from an earlier `up`) is reused, so certificates handed out before stay valid.
public enum SandboxIdentities {
    public static let controllerName = "upkeep"
    public static let validityDays = 30

    /// Creates or reuses the CA and issues what is missing; returns the directory.
    @discardableResult
    public static func prepare(directory: String, nodes: [SandboxNode]) throws -> PKIDirectory {
        let pki = PKIDirectory(path: "\(directory)/pki")
        if !FileManager.default.fileExists(atPath: pki.caKeyPath) {
            try pki.initialize(validity: PKIDirectory.validity(days: validityDays + 1))
        }
        let identities = try [PeerIdentity(role: .controller, name: controllerName)]
            + nodes.map { try PeerIdentity(role: .agent, name: $0.name) }
        for identity in identities where (try? pki.loadIdentity(identity)) == nil {
            let address = nodes.first { $0.name == identity.name && identity.role == .agent }?.address
            try pki.issue(identity, validity: PKIDirectory.validity(days: validityDays), ipAddresses: address.map { [$0] } ?? [],
                          force: true)
        }
        return pki
    }

    /// `DIR/upkeep.yaml` in the controller's schema (docs/configuration.md).
    public static func controllerConfig(directory: String, releaseURL: String, agentPort: Int) -> String {
        """
        # Written by `upkeep sandbox up` for the controller of the sandbox in \(directory).
        kubeconfig: \(directory)/kubeconfig
        pki: {ca: \(directory)/pki/ca.crt, certificate: \(directory)/pki/controllers/\(controllerName).crt, key: \(directory)/pki/controllers/\(controllerName).key}
        agentPort: \(agentPort)          # default port; a node annotation upkeep.io/agent-address: "host:port" overrides
        stateDir: \(directory)/state
        # The release server has no TLS. On loopback that needs nothing; on the bridge of --netns
        # insecure allows its http:// (and each command warns about it once).
        releases: {githubAPI: "\(releaseURL)", channelServer: "\(releaseURL)/v1-release/channels", mirror: null, insecure: true}
        policy: {concurrency: 1, drainTimeoutSeconds: 120, healthTimeoutSeconds: 60, rebuildTimeoutSeconds: 120, pollIntervalMilliseconds: 500, autoRollback: true, drain: {deleteEmptyDirData: true}}

        """
    }
}
