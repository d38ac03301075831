import Foundation
import UpkeepCLI

exit(await Upkeep.runReturningExitCode())
