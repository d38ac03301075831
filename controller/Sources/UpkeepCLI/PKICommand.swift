import ArgumentParser

/// `upkeep pki`: the cluster's private CA and the agent and controller identities it issues.
struct PKI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Create the cluster CA and issue agent and controller certificates.",
        discussion: "Layout: DIR/ca.crt, DIR/ca.key, DIR/agents/<node>.crt|.key, DIR/controllers/<name>.crt|.key. See docs/pki.md.",
        subcommands: [PKIInit.self, PKIIssue.self, PKIShow.self, PKIStatus.self, PKIRevoke.self, PKIRenew.self]
    )
}
