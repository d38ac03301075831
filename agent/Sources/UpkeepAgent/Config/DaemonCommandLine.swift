/// The daemon's command line as systemd gives it (`upkeep-agent run --config PATH`), read without
/// ArgumentParser: the daemon then never runs the command-line framework, whose parsing (generic
/// metadata, reflection over the command types) kept about 0.7 MiB of code and data resident in
/// every idle agent. Only the exact forms below are read here; anything else, `--help` included,
/// goes to ArgumentParser, so help and errors are the same as before.
public enum DaemonCommandLine {
    /// The configuration file to run the daemon with, when `arguments` (without the program's
    /// name) are `[run] [--config PATH | --config=PATH]`; nil for anything else.
    public static func configPath(_ arguments: [String]) -> String? {
        var rest = arguments[...]
        if rest.first == "run" { rest = rest.dropFirst() }
        switch rest.count {
        case 0:
            return AgentConfig.defaultPath
        case 1:
            guard let option = rest.first, option.hasPrefix("--config=") else { return nil }
            let path = String(option.dropFirst("--config=".count))
            return path.isEmpty ? nil : path
        case 2:
            guard rest.first == "--config", let path = rest.last, !path.isEmpty, !path.hasPrefix("-") else { return nil }
            return path
        default:
            return nil
        }
    }
}
