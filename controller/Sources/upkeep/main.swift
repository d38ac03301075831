import Foundation
import UpkeepCLI
import UpkeepProtocol

// Chunk streams to agents allocate a window of large buffers at a steady rate (StreamAllocator).
StreamAllocator.configure()

exit(await Upkeep.runReturningExitCode())
