import ArgumentParser
import UpkeepUpdates

/// Where `upkeep check` reads from and keeps its state. Each option overrides the same setting
/// of `upkeep.yaml` (`--config`); what neither gives has the file's default.
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

    @Option(name: .customLong("github-api"), help: ArgumentHelp("The GitHub API base URL (default: https://api.github.com).", valueName: "URL"))
    var githubAPI: String?

    @Option(name: .customLong("channel-server"), help: ArgumentHelp("The k3s channel server base URL (default: https://update.k3s.io).",
                                                                     valueName: "URL"))
    var channelServer: String?

    @Flag(name: .long, help: "Allow http:// release sources (--github-api, --channel-server, --mirror), as releases.insecure: true does; warned about.")
    var insecure = false

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

    /// `config` with the settings these options give replaced by theirs.
    func overriding(_ config: ControllerConfig) -> ControllerConfig {
        var config = config
        if let kubeconfig { config.kubeconfig = kubeconfig }
        if let context { config.context = context }
        if let stateDir { config.stateDir = stateDir }
        if let githubAPI { config.releases.githubAPI = githubAPI }
        if let channelServer { config.releases.channelServer = channelServer }
        if let mirror { config.releases.mirror = mirror }
        if let caFile { config.releases.caFile = caFile }
        if let githubTokenFile { config.releases.githubTokenFile = githubTokenFile }
        if insecure { config.releases.insecure = true }
        return config
    }
}
