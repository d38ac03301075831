import ArgumentParser

/// `upkeep notify`: the notification sinks of upkeep.yaml (docs/notifications.md).
struct NotifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Send a test notification, or show what the notification outbox holds per sink.",
        subcommands: [NotifyTestCommand.self, NotifyStatusCommand.self])
}
