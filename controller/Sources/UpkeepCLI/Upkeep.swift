import ArgumentParser

/// The `upkeep` command line: the root only lists subcommands; each lives in its own file.
public struct Upkeep: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "upkeep",
        abstract: "Safe rolling updates for k3s clusters running Flux and Longhorn.",
        version: "0.1.0",
        subcommands: [
            PKI.self,
            Demo.self,
            Check.self,
            PlanCommand.self,
            Rehearse.self,
            Apply.self,
            Status.self,
            Resume.self,
            Rollback.self,
            Recover.self,
            Abandon.self,
            Report.self,
            History.self,
            Agents.self,
            BackupCommand.self,
            Metrics.self,
            Serve.self,
            NotifyCommand.self,
            TokenCommand.self,
            JoinServerCommand.self,
            Update.self,
            MaintenanceCommand.self,
            ValidateCommand.self,
            Sandbox.self,
        ]
    )

    public init() {}
}
