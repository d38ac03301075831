import Foundation

/// How Upkeep runs `git`: the controller commits to the repository Flux watches (`upkeep update`),
/// the sandbox keeps its own repository for its Flux.
public enum Git {
    /// The environment of every git Upkeep runs: it never prompts for credentials, and commits as
    /// `identity` unless `GIT_AUTHOR_*`/`GIT_COMMITTER_*` say otherwise. `hermetic` also ignores
    /// the machine's /etc/gitconfig (the sandbox's own repository); an operator's repository
    /// keeps it (credential helpers, proxies).
    public static func environment(identity: String, hermetic: Bool = false) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_TERMINAL_PROMPT"] = "0"
        if hermetic { environment["GIT_CONFIG_NOSYSTEM"] = "1" }
        for role in ["AUTHOR", "COMMITTER"] {
            environment["GIT_\(role)_NAME"] = environment["GIT_\(role)_NAME"] ?? identity
            environment["GIT_\(role)_EMAIL"] = environment["GIT_\(role)_EMAIL"] ?? "\(identity)@localhost"
        }
        return environment
    }
}
