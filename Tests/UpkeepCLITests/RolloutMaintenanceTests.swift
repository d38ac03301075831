import Foundation
import Synchronization
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepPOSIX
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore
@testable import UpkeepCLI

/// Maintenance mode around a rollout as the runtime's bracket, against the sandbox's simulated
/// API and a real state database (the harness of `MaintenanceModeTests`): on when the run opens,
/// off or on as the run ended, and nothing written without the lock.
@Suite struct RolloutMaintenanceTests {
    /// The lock as a rollout holds it (this state directory's lease; no cluster Lease here).
    static func held(_ store: StateStore) async throws -> OperationLock {
        let lock = OperationLock(store: store, cluster: nil, configuration: RuntimeConfiguration(holder: "test"))
        try await lock.acquire(operation: "apply r1", lost: { _ in })
        return lock
    }

    /// What the bracket said to the operator.
    final class Said: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    static func bracket(_ harness: MaintenanceModeTests.Harness, said: Said = Said()) -> RolloutMaintenance {
        RolloutMaintenance(harness.mode(), by: "alice@ctl-1", say: { line in said.lines.withLock { $0.append(line) } })
    }

    @Test func onWhenTheRunOpensOnWhileBlockedOffWhenFinished() async throws {
        try await MaintenanceModeTests.with { harness in
            let said = Said()
            let maintenance = Self.bracket(harness, said: said)
            let lock = try await Self.held(harness.store)
            try await maintenance.opening(rolloutID: "r1", lock: lock)
            #expect(try await harness.configMap()?[path: "data", "rollout"]?.string == "r1")
            await maintenance.closing(rolloutID: "r1", lock: lock, outcome: .success(.blocked(reason: "agent-1 unhealthy")))
            #expect(try await harness.configMap() != nil, "switched off while the rollout is blocked")
            #expect(said.all.contains { $0.contains("stays on while the rollout is blocked") }, "\(said.all)")
            await maintenance.closing(rolloutID: "r1", lock: lock, outcome: .success(.finished(.completed)))
            #expect(try await harness.configMap() == nil)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })
            #expect(maintenance.failure == nil)
            await lock.release()
        }
    }

    /// A run the store refused when loading (nothing to resume) never drove the rollout: what its
    /// opening switched on goes off again. A run that lost its lock leaves it on.
    @Test func offAgainWhenTheStoreRefusedTheRunOnWhenTheLockWasLost() async throws {
        try await MaintenanceModeTests.with { harness in
            let maintenance = Self.bracket(harness)
            let lock = try await Self.held(harness.store)
            try await maintenance.opening(rolloutID: "r1", lock: lock)
            await maintenance.closing(rolloutID: "r1", lock: lock, outcome: .failure(.lockLost(rolloutID: "r1", reason: "taken over")))
            #expect(try await harness.configMap() != nil, "switched off by a run that lost its lock")
            await maintenance.closing(rolloutID: "r1", lock: lock, outcome: .failure(.store(.nothingToResume)))
            #expect(try await harness.configMap() == nil)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })
            await lock.release()
        }
    }

    /// Without the lock (lost, or never taken) nothing is written: the run is not started, exit 6.
    @Test func withoutTheLockNothingIsSwitchedOn() async throws {
        try await MaintenanceModeTests.with { harness in
            let maintenance = Self.bracket(harness)
            let lock = OperationLock(store: harness.store, cluster: nil, configuration: RuntimeConfiguration(holder: "test"))
            await #expect(throws: (any Error).self) { try await maintenance.opening(rolloutID: "r1", lock: lock) }
            let failure = try #require(maintenance.failure)
            #expect(failure.code == RolloutExitCode.leaseHeld && failure.message.contains("could not be switched on")
                    && failure.message.hasSuffix("no node was touched"), "\(failure.message)")
            #expect(try await harness.configMap() == nil)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })
            #expect(try harness.store.openMaintenancePeriod() == nil)
        }
    }
}
