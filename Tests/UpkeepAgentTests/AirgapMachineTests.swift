import Testing
import UpkeepAgentCore
import UpkeepCore
@testable import UpkeepAgent

private let old = String(repeating: "a", count: 64)
private let new = String(repeating: "b", count: 64)
private let tarball = "k3s-airgap-images-amd64.tar.zst"
private let newImages = ImagesRef(sha256: String(repeating: "e", count: 64), fileName: tarball, k3sVersion: "v1.31.2+k3s1")

/// An air-gapped node (https://docs.k3s.io/installation/airgap, "Manually deploy images"): k3s
/// imports its images from its images directory, so the new version's tarball is placed before
/// its binary, and whatever puts the previous binary back puts its tarball back first.
private func airgappedNode(newHealthy: Bool = true) -> SimulatedNode {
    var node = SimulatedNode(live: old, running: old)
    node.versions = [old: "v1.30.6+k3s1", new: "v1.31.2+k3s1"]
    node.healthyAfterMs[old] = 1_000
    if newHealthy { node.healthyAfterMs[new] = 1_500 }
    node.airgapped = true
    node.imagesDir = [tarball: "v1.30.6+k3s1"]
    return node
}

private func installWithImages(_ harness: inout MachineHarness, id: String = "install-1", watchdogTimeoutMs: Int64 = 60_000) {
    harness.send(.install(.init(operationID: id, target: harness.node.binary(new), healthTimeoutMs: 10_000,
                                watchdogTimeoutMs: watchdogTimeoutMs, images: newImages), live: harness.node.liveBinary))
}

/// The node runs a whole version whose images tarball is in the images directory.
private func expectConsistent(_ node: SimulatedNode, _ context: String) {
    let running = node.running.flatMap { node.versions[$0] }
    #expect(node.running == node.live, "\(context): running \(node.running ?? "nothing"), live \(node.live)")
    #expect(node.imagesDir.values.contains { $0 == running }, "\(context): \(running ?? "nothing") runs with images \(node.imagesDir)")
}

@Suite struct AirgapMachineTests {
    @Test func theImagesGoInBeforeTheBinaryAndTheOldOnesAreKeptAside() throws {
        var harness = MachineHarness(node: airgappedNode())
        installWithImages(&harness)
        harness.settle()
        #expect(harness.replies["install-1"]?.state == .succeeded, "\(harness.replies["install-1"]?.message ?? "")")
        #expect(Array(harness.performed.prefix(5)) == [.keepPrevious(LiveBinary(sha256: old, k3sVersion: "v1.30.6+k3s1")), .keepImages,
                                                       .placeImages(newImages), .place(harness.node.binary(new)), .restartUnit])
        #expect(harness.node.imagesDir == [tarball: "v1.31.2+k3s1"] && harness.node.keptImages == [tarball: "v1.30.6+k3s1"])
        // Kept before anything in the directory changed: the record precedes the placement.
        let kept = try #require(harness.records.firstIndex(of: .step(operationID: "install-1", .imagesKept)))
        let placed = try #require(harness.records.firstIndex(of: .step(operationID: "install-1", .placed(sha256: new))))
        #expect(kept < placed && harness.machine.journal.previousImagesKept == true)
        // Committing changes nothing on disk: the kept tarball stays with the kept binary.
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        harness.settle()
        #expect(harness.replies["commit-1"]?.state == .succeeded && harness.pending == nil)
        #expect(harness.node.keptImages == [tarball: "v1.30.6+k3s1"])
    }

    @Test func aVersionThatFailsGetsTheOldImagesBackBeforeTheOldBinary() throws {
        var harness = MachineHarness(node: airgappedNode(newHealthy: false))
        installWithImages(&harness)
        harness.settle()
        let outcome = try #require(harness.replies["install-1"])
        #expect(outcome.state == .reverted)
        let revert = try #require(harness.performed.lastIndex(of: .restoreImages))
        #expect(harness.performed[revert + 1] == .place(harness.node.binary(old, .previous)))
        #expect(harness.node.imagesDir == [tarball: "v1.30.6+k3s1"])
        expectConsistent(harness.node, "after the revert")
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.revertProbe?.healthy == true)
    }

    @Test func theWatchdogAndARollbackAfterCommitPutTheImagesBack() throws {
        // The watchdog's revert.
        var watched = MachineHarness(node: airgappedNode())
        installWithImages(&watched, watchdogTimeoutMs: 5_000)
        watched.settle()
        watched.node.healthyAfterMs[new] = nil
        watched.node.startedAt = watched.now
        watched.settle(until: watched.now.adding(milliseconds: 60_000))
        guard case .reverted? = watched.machine.journal.operation("install-1")?.watchEnd else {
            Issue.record("the watchdog did not revert: \(String(describing: watched.machine.journal.operation("install-1")?.watchEnd))")
            return
        }
        #expect(watched.performed.contains(.restoreImages))
        expectConsistent(watched.node, "after the watchdog's revert")

        // A rollback of a committed install (a later wave failed): the kept tarball is still there.
        var committed = MachineHarness(node: airgappedNode())
        installWithImages(&committed)
        committed.settle()
        committed.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        let before = committed.performed.count
        committed.send(.rollback(.init(operationID: "rollback-1", target: nil, healthTimeoutMs: 10_000), live: committed.node.liveBinary))
        committed.settle()
        #expect(committed.replies["rollback-1"]?.state == .succeeded, "\(committed.replies["rollback-1"]?.message ?? "")")
        #expect(Array(committed.performed[before...].prefix(3)) == [.restoreImages, .place(committed.node.binary(old, .previous)), .restartUnit])
        expectConsistent(committed.node, "after the rollback")
    }

    @Test func aFailedPlacementLeavesTheOldImagesAndBinary() throws {
        var harness = MachineHarness(node: airgappedNode())
        harness.node.placeImagesFails = true
        installWithImages(&harness)
        harness.settle()
        let outcome = try #require(harness.replies["install-1"])
        #expect(outcome.state == .failed && outcome.failure == .io && outcome.message.contains("No space left"), "\(outcome.message)")
        #expect(harness.performed.last == .restoreImages && harness.node.live == old)
        expectConsistent(harness.node, "after the failed placement")
    }

    /// A restore or rejoin on an air-gapped server brings the old version's tarball before the old
    /// binary (docs/agent.md, "Restore and rejoin"); killed after any effect, the restarted agent
    /// finishes it and the node runs the old version with its images.
    @Test(arguments: [OperationKind.restore, .rejoin])
    func aRestoreOrRejoinPlacesTheOldVersionsImagesBeforeTheOldBinary(method: OperationKind) throws {
        let backup = String(repeating: "d", count: 64)
        let oldImages = ImagesRef(sha256: String(repeating: "f", count: 64), fileName: tarball, k3sVersion: "v1.30.6+k3s1")
        func upgradedServer() -> MachineHarness {
            var node = airgappedNode()
            node.restoreFiles = [backup]
            var harness = MachineHarness(node: node, role: .server)
            installWithImages(&harness)
            harness.settle()
            precondition(harness.replies["install-1"]?.state == .succeeded && harness.node.imagesDir == [tarball: "v1.31.2+k3s1"])
            return harness
        }
        func begin(_ harness: inout MachineHarness) {
            let target = harness.node.binary(old)
            if method == .restore {
                harness.send(.restore(.init(operationID: "x-1", target: target, backupSHA256: backup, format: .etcdSnapshot, healthTimeoutMs: 10_000,
                                            images: oldImages), live: harness.node.liveBinary))
            } else {
                harness.send(.rejoin(.init(operationID: "x-1", target: target, healthTimeoutMs: 10_000, images: oldImages), live: harness.node.liveBinary))
            }
        }
        var reference = upgradedServer()
        let start = reference.performed.count
        begin(&reference)
        reference.settle()
        #expect(reference.replies["x-1"]?.state == .succeeded, "\(reference.replies["x-1"]?.message ?? "")")
        #expect(Array(reference.performed[start...].prefix(3)) == [.stopUnit, .placeImages(oldImages), .place(reference.node.binary(old))])
        #expect(reference.node.imagesDir == [tarball: "v1.30.6+k3s1"])
        expectConsistent(reference.node, "after the \(method)")
        for crashAfter in 0...(reference.performed.count - start) {
            var harness = upgradedServer()
            begin(&harness)
            for _ in 0..<crashAfter { harness.step() }
            var restarted = harness.restarted()
            restarted.settle()
            let context = "\(method) killed after \(crashAfter) effects"
            #expect(restarted.machine.journal.operation("x-1")?.outcome?.state == .succeeded, "\(context)")
            expectConsistent(restarted.node, context)
        }
    }

    /// Killed after any number of effects (between the images and the binary too), and before
    /// any record: the restarted agent leaves a version running with its images, and says nothing
    /// about the new version from the crash.
    @Test(arguments: [true, false])
    func killedAnywhereTheNodeRunsAVersionWithItsImages(newHealthy: Bool) throws {
        var reference = MachineHarness(node: airgappedNode(newHealthy: newHealthy))
        installWithImages(&reference)
        reference.settle()
        var crashes: [(MachineHarness, String)] = []
        for cut in 0..<reference.records.count {
            var dead = reference
            dead.records = Array(reference.records.prefix(cut))
            dead.node = reference.nodeBeforeRecord[cut]
            crashes.append((dead, "crash before record \(cut) (\(reference.records[cut]))"))
        }
        for effects in 0...reference.performed.count {
            var dead = MachineHarness(node: airgappedNode(newHealthy: newHealthy))
            installWithImages(&dead)
            for _ in 0..<effects { dead.step() }
            crashes.append((dead, "crash after \(effects) effects (\(dead.performed.last.map { "\($0)" } ?? "none"))"))
        }
        for (dead, crash) in crashes {
            var restarted = dead.restarted()
            restarted.settle()
            let context = "\(crash), new healthy \(newHealthy)"
            expectConsistent(restarted.node, context)
            guard let outcome = restarted.machine.journal.operation("install-1")?.outcome else { continue }
            #expect(outcome.state != .reverted || !newHealthy, "\(context): \(outcome.message)")
            if outcome.state == .failed { #expect(outcome.failure == .interrupted, "\(context): \(outcome.message)") }
        }
    }
}
