import ArgumentParser
import Foundation
import UpkeepUpdates

/// Where `upkeep check` reads from and keeps its state.
struct CheckOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The kubeconfig (default: KUBECONFIG, ~/.kube/config, /etc/rancher/k3s/k3s.yaml).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(name: .long, help: ArgumentHelp("The kubeconfig context (default: its current context).", valueName: "NAME"))
    var context: String?

    @Option(name: .long, help: ArgumentHelp("The k3s channel whose version is the target: stable, latest, v1.33, …", valueName: "NAME"))
    var channel = "stable"

    @Flag(name: .customLong("pre-releases"), help: "Consider pre-releases (release candidates) too.")
    var preReleases = false

    @Flag(name: .long, help: "Consider draft releases too (GitHub shows them only to tokens with push access).")
    var drafts = false

    @Option(name: .long, help: ArgumentHelp("Read releases from a mirror directory or http(s) URL instead of GitHub (layout: docs/check.md).",
                                            valueName: "DIR|URL"))
    var mirror: String?

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("Trust only these CA certificates (PEM) for HTTPS instead of the system store.",
                                                              valueName: "PATH"))
    var caFile: String?

    @Option(name: .customLong("github-api"), help: ArgumentHelp("The GitHub API base URL.", valueName: "URL"))
    var githubAPI = "https://api.github.com"

    @Option(name: .customLong("channel-server"), help: ArgumentHelp("The k3s channel server base URL.", valueName: "URL"))
    var channelServer = "https://update.k3s.io"

    @Option(name: .customLong("github-token-file"),
            help: ArgumentHelp("A file (mode 0600) holding a GitHub token; default: the GITHUB_TOKEN environment variable.", valueName: "PATH"))
    var githubTokenFile: String?

    @Option(name: .long, help: ArgumentHelp("Replace the built-in compatibility entries of the components this JSON file names.",
                                            valueName: "PATH"))
    var compatibility: String?

    @Option(name: .customLong("state-dir"),
            help: ArgumentHelp("Where the HTTP cache and the check history live (default: UPKEEP_STATE_DIR, /var/lib/upkeep as root, else ~/.local/state/upkeep).",
                               valueName: "DIR"))
    var stateDir: String?

    @Option(name: .customLong("timeout"), help: ArgumentHelp("Seconds to wait for each answer (1 to 300).", valueName: "SECONDS"))
    var timeoutSeconds: Double = 30

    func validate() throws {
        guard ChannelParser.isChannelName(channel) else { throw ValidationError("--channel \(channel) is not a channel name (stable, latest, v1.33, …)") }
        guard (1...300).contains(timeoutSeconds) else { throw ValidationError("--timeout must be between 1 and 300 seconds") }
    }

    /// The state directory to use, from the option, the environment or the defaults.
    func resolvedStateDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        StateDirectory.resolve(explicit: stateDir, environment: environment)
    }
}
