import ArgumentParser
import UpkeepYAML

/// `--config FILE` for the commands that act on a cluster.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The upkeep.yaml to use (default: UPKEEP_CONFIG, ./upkeep.yaml, ~/.config/upkeep/upkeep.yaml, /etc/upkeep/upkeep.yaml).",
                                            valueName: "FILE"))
    var config: String?

    /// The configuration, or a usage error that names the file, line and field.
    func load() throws -> ControllerConfig {
        do {
            return try ControllerConfig.locate(explicit: config)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
