import ArgumentParser
import UpkeepUpdates

/// `upkeep check`: what is installed, what is available, the path there and what would break.
///
/// Exit codes are `CheckExitCode` (0 up to date, 10 updates available; docs/check.md). Reads
/// `upkeep.yaml` like every command; its options override the file.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check k3s, Flux and Longhorn for updates: installed and available versions, upgrade paths, warnings.",
        discussion: """
            Exit codes: 0 up to date, 10 updates available, 2 usage error, 3 configuration error \
            (token file, CA, compatibility file, state directory), 4 the cluster could not be read, \
            5 the release source could not be reached (network, TLS, rate limit, missing mirror file), \
            6 the release source answered something malformed, 7 the check ran but could not be \
            recorded in the history, 1 anything else. See docs/check.md.
            """
    )

    @Flag(name: .long, help: "Check every component (the default).")
    var all = false

    @Option(name: .long, help: ArgumentHelp("Check only this component; repeat for several (k3s, flux, longhorn).", valueName: "NAME"),
            transform: parseComponent)
    var component: [Component] = []

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output format: table or json.", valueName: "FORMAT"))
    var output: OutputFormat = .table

    @Flag(name: .long, help: "The full report of every component (same as --all; for `--report --output json`).")
    var report = false

    @OptionGroup var options: CheckOptions

    @OptionGroup var configOption: ConfigOption

    func validate() throws {
        if (all || report) && !component.isEmpty { throw ValidationError("--\(all ? "all" : "report") and --component exclude each other") }
        try options.validate()
    }

    func run() async throws {
        let components = component.isEmpty ? Set(Component.allCases) : Set(component)
        let config = options.overriding(try configOption.load())
        var run = CheckRun(config: config, options: options, components: components, format: output)
        let code: Int32
        if config.notifications.isEmpty {
            code = await run.execute()
        } else {
            let store = try openStateStore(config)
            run.notifications = store
            code = try await NotificationRun.with(config, store: store) { await run.execute() }
        }
        if code != 0 { throw ExitCode(code) }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
}

func parseComponent(_ text: String) throws -> Component {
    guard let component = Component(rawValue: text) else {
        throw ValidationError("unknown component \(text); use one of: \(Component.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return component
}
