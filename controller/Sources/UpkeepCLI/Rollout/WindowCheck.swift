import UpkeepCore
import UpkeepRollout

/// What the maintenance windows say before a change starts (`apply`, `rollback`, `update`):
/// outside them the change is refused (exit 5, nothing changed) unless `--ignore-window`, and a
/// dry run only says it would be; inside them it says until when they stay open.
struct WindowCheck {
    /// The command, for "apply would refuse now".
    var command: String
    /// After "going ahead (--ignore-window)": what that means for the rest of the change.
    var ignoredMeans: String
    /// After "inside the maintenance windows … until T": what happens at T.
    var closingMeans: String

    /// The windows the change keeps: `windows`, or nil when there are none or `--ignore-window`
    /// set them aside. Throws the refusal.
    func beforeStart(_ windows: [MaintenanceWindow]?, ignoreWindow: Bool, dryRun: Bool, now: Instant) throws -> [MaintenanceWindow]? {
        guard let windows, !windows.isEmpty else { return nil }
        guard windows.isOpen(at: now) else {
            let outside = "outside the maintenance windows (\(windows.listed)); the next opens at \(windows.nextOpenText(atOrAfter: now))"
            if ignoreWindow {
                print("note: \(outside); going ahead (--ignore-window)\(ignoredMeans)")
                return nil
            }
            if dryRun {
                print("note: \(outside); \(command) would refuse now (run it then, or pass --ignore-window)")
                return windows
            }
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(outside); run it then, or pass --ignore-window; nothing was changed")
        }
        if ignoreWindow { return nil }
        if let closes = windows.closing(after: now) {
            print("inside the maintenance windows (\(windows.listed)) until \(MaintenanceWindowClock.text(closes, in: windows.sharedZone))\(closingMeans)")
        } else {
            print("inside the maintenance windows (\(windows.listed)), which together never close")
        }
        return windows
    }
}
