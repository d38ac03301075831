import Foundation
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepYAML
@testable import UpkeepCLI

/// Maintenance mode against the sandbox's simulated API over HTTP (its Flux objects: the
/// Kustomizations flux-system and apps, the HelmReleases longhorn and podinfo) and a real state
/// database: what is suspended, what is recorded where and in which order, and what a disable
/// after an interruption resumes. The built binary against a whole sandbox, with kubectl as the
/// witness, is Tests/UpkeepEndToEndTests/MaintenanceEndToEndTests.swift.
@Suite struct MaintenanceModeTests {
    /// Records every event handed over, as the notifications outbox would take them.
    final class RecordingNotifier: MaintenanceNotifier, @unchecked Sendable {
        private let lock = NSLock()
        private var recorded: [MaintenanceEvent] = []
        var events: [MaintenanceEvent] { lock.withLock { recorded } }
        var missingSink: String? { nil }
        func emit(_ event: MaintenanceEvent) async throws { lock.withLock { recorded.append(event) } }
    }

    struct Harness {
        let api: SandboxAPI
        let store: StateStore
        let directory: TemporaryDirectory
        let notifier = RecordingNotifier()

        func mode(_ settings: ControllerConfig.Maintenance = ControllerConfig.Maintenance()) -> MaintenanceMode {
            MaintenanceMode(kube: api.client, store: store, settings: settings, notifier: notifier, say: { _ in })
        }

        /// `spec.suspend` of every Kustomization and HelmRelease, by `Kind/namespace/name`.
        func suspension() async throws -> [String: Bool] {
            var seen: [String: Bool] = [:]
            for kind in [FluxSuspendKind.kustomizations, .helmreleases] {
                for item in try await api.client.list(kind.resource) {
                    let ref = FluxObjectRef(kind: kind, namespace: item[path: "metadata", "namespace"]?.string ?? "", name: item[path: "metadata", "name"]?.string ?? "")
                    seen[ref.description] = item[path: "spec", "suspend"]?.bool ?? false
                }
            }
            return seen
        }

        func configMap() async throws -> JSON? {
            do { return try await api.client.get(.configMaps, "upkeep-maintenance", namespace: "kube-system") } catch let error as KubeAPIError where error.isNotFound { return nil }
        }

        func setSuspended(_ kind: FluxSuspendKind, _ namespace: String, _ name: String, _ suspended: Bool) async throws {
            _ = try await api.client.patch(kind.resource, name, namespace: namespace, ["spec": ["suspend": .bool(suspended)]])
        }
    }

    static func with(_ body: (Harness) async throws -> Void) async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0, replicas: 1))
        let directory = try TemporaryDirectory()
        do {
            try await body(Harness(api: api, store: try StateStore(stateDirectory: directory.file("state")), directory: directory))
        } catch {
            await api.close()
            throw error
        }
        await api.close()
    }

    static let t0 = Instant(milliseconds: 1_796_000_000_000)
    static let all = ["Kustomization/flux-system/apps", "Kustomization/flux-system/flux-system", "HelmRelease/longhorn-system/longhorn",
                      "HelmRelease/default/podinfo"]

    @Test func enableSuspendsWhatWasNotSuspendedAndDisableResumesOnlyThat() async throws {
        try await Self.with { harness in
            try await harness.setSuspended(.helmreleases, "default", "podinfo", true)
            let mode = harness.mode()
            guard case .enabled(let period) = try await mode.enable(reason: "kernel updates", by: "alice@ctl", notify: true, now: Self.t0) else {
                Issue.record("not enabled")
                return
            }
            #expect(period.suspended == ["Kustomization/flux-system/apps", "Kustomization/flux-system/flux-system", "HelmRelease/longhorn-system/longhorn"])
            #expect(period.alreadySuspended == ["HelmRelease/default/podinfo"])
            #expect(try await harness.suspension() == Dictionary(uniqueKeysWithValues: Self.all.map { ($0, true) }))
            // The cluster's record, as kubectl shows it, and this controller's.
            let data = try #require(try await harness.configMap()?["data"]?.stringMap)
            #expect(data["state"] == "enabled" && data["reason"] == "kernel updates" && data["by"] == "alice@ctl" && data["id"] == period.id, "\(data)")
            #expect(data["since"] == KubeTime.format(Self.t0.unixSeconds) && data["rollout"] == nil)
            #expect(data["suspended"] == period.suspended.map { $0 + "\n" }.joined() && data["alreadySuspended"] == "HelmRelease/default/podinfo\n")
            #expect(try harness.store.openMaintenancePeriod() == period)
            // Again: on already, nothing changes.
            #expect(try await mode.enable(reason: "other", by: "bob@ctl", notify: true, now: Self.t0.adding(seconds: 5)) == .alreadyOn(period))

            guard case .disabled(let ended, let gone) = try await mode.disable(by: "bob@ctl", notify: true, now: Self.t0.adding(seconds: 60)) else {
                Issue.record("not disabled")
                return
            }
            #expect(gone.isEmpty && ended.state == .ended && ended.endedBy == "bob@ctl")
            var expected = Dictionary(uniqueKeysWithValues: Self.all.map { ($0, false) })
            expected["HelmRelease/default/podinfo"] = true
            #expect(try await harness.suspension() == expected)
            // Resumed as `flux resume` does: a reconcile requested.
            let apps = try await harness.api.client.get(.fluxKustomizations, "apps", namespace: "flux-system")
            #expect(apps[path: "metadata", "annotations", "reconcile.fluxcd.io/requestedAt"]?.string == KubeTime.format(Self.t0.adding(seconds: 60).unixSeconds))
            #expect(try await harness.configMap() == nil)
            #expect(try harness.store.openMaintenancePeriod() == nil && harness.store.maintenancePeriods(limit: 5) == [ended])
            #expect(try await mode.disable(by: "bob@ctl", notify: true, now: Self.t0.adding(seconds: 61)) == .wasOff)
            // The seam: an event each way, with the record.
            #expect(harness.notifier.events.map(\.name) == [.enabled, .disabled])
            #expect(harness.notifier.events.first?.period.suspended == period.suspended && harness.notifier.events.last?.period.state == .ended)
        }
    }

    @Test func withoutNotifyNothingIsHandedOverAndWithoutASinkTheCommandSaysSo() async throws {
        try await Self.with { harness in
            let mode = harness.mode()
            _ = try await mode.enable(reason: "r", by: "a@b", notify: false, now: Self.t0)
            _ = try await mode.disable(by: "a@b", notify: false, now: Self.t0.adding(seconds: 1))
            #expect(harness.notifier.events.isEmpty)
            #expect(NoNotificationSink().missingSink?.contains("no notification sink is configured") == true)
        }
    }

    /// The record comes first: an enable cut off after it (the ConfigMap says `enabling` and
    /// names objects of which only some were suspended) is undone exactly by a disable, and
    /// finished by another enable.
    @Test func anEnableCutOffAfterItsRecordIsUndoneOrFinishedFromTheRecord() async throws {
        try await Self.with { harness in
            try await harness.setSuspended(.helmreleases, "default", "podinfo", true)
            let objects = try await harness.mode().listObjects()
            var period = MaintenanceRecord.enabling(id: "m1", objects: objects, since: Self.t0, reason: "cut off", by: "a@b", rollout: nil)
            _ = try await harness.api.client.create(.configMaps, MaintenanceRecord.configMap(period))
            try await harness.setSuspended(.kustomizations, "flux-system", "apps", true)  // the one patch that went out

            let status = try await harness.mode().current()
            #expect(status.cluster?.state == .enabling && status.cluster?.suspended == period.suspended && status.local == nil)
            guard case .disabled(_, let gone) = try await harness.mode().disable(by: "a@b", notify: false, now: Self.t0.adding(seconds: 1)) else {
                Issue.record("not disabled")
                return
            }
            #expect(gone.isEmpty)
            #expect(try await harness.suspension() == ["Kustomization/flux-system/apps": false, "Kustomization/flux-system/flux-system": false,
                                                       "HelmRelease/longhorn-system/longhorn": false, "HelmRelease/default/podinfo": true])

            // The same cut-off enable, finished by enabling again.
            period.id = "m2"
            _ = try await harness.api.client.create(.configMaps, MaintenanceRecord.configMap(period))
            guard case .enabled(let finished) = try await harness.mode().enable(reason: "ignored", by: "c@d", notify: false, now: Self.t0.adding(seconds: 2)) else {
                Issue.record("not enabled")
                return
            }
            #expect(finished.id == "m2" && finished.reason == "cut off" && finished.state == .enabled)
            #expect(try await harness.suspension().values.allSatisfy { $0 })
        }
    }

    /// The ConfigMap deleted by hand while on: `status` and `disable` work from this controller's
    /// record; an `enable` says to disable first.
    @Test func withTheConfigMapGoneTheDatabasesRecordIsUsed() async throws {
        try await Self.with { harness in
            _ = try await harness.mode().enable(reason: "r", by: "a@b", notify: false, now: Self.t0)
            try await harness.api.client.delete(.configMaps, "upkeep-maintenance", namespace: "kube-system")
            let status = try await harness.mode().current()
            #expect(status.cluster == nil && status.local?.state == .enabled)
            await #expect(throws: MaintenanceError.self) { _ = try await harness.mode().enable(reason: "r", by: "a@b", notify: false, now: Self.t0) }
            guard case .disabled(let period, _) = try await harness.mode().disable(by: "a@b", notify: false, now: Self.t0.adding(seconds: 1)) else {
                Issue.record("not disabled")
                return
            }
            #expect(period.suspended.count == 4)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })
        }
    }

    /// A disable cut off halfway refuses an enable until it is finished.
    @Test func anInterruptedDisableMustBeFinishedFirst() async throws {
        try await Self.with { harness in
            _ = try await harness.mode().enable(reason: "r", by: "a@b", notify: false, now: Self.t0)
            _ = try await harness.api.client.patch(.configMaps, "upkeep-maintenance", namespace: "kube-system", ["data": ["state": "disabling"]])
            do {
                _ = try await harness.mode().enable(reason: "r", by: "a@b", notify: false, now: Self.t0)
                Issue.record("enabled over an interrupted disable")
            } catch let error as MaintenanceError {
                #expect(error.description.contains("was interrupted; run `upkeep maintenance disable` to finish it first"), "\(error)")
            }
            _ = try await harness.mode().disable(by: "a@b", notify: false, now: Self.t0.adding(seconds: 1))
            #expect(try await harness.configMap() == nil)
        }
    }

    /// `maintenance.suspend` and `suspendSelector` narrow what is suspended.
    @Test func theConfigurationChoosesWhatIsSuspended() async throws {
        try await Self.with { harness in
            let config = try ControllerConfig.parse("maintenance:\n  suspend: [helmreleases]\n  suspendSelector: \"team=storage\"\n", file: "/u.yaml")
            #expect(config.maintenance.suspend == [.helmreleases] && !config.maintenance.suspendFlux)
            _ = try await harness.api.client.patch(.fluxHelmReleases, "longhorn", namespace: "longhorn-system", ["metadata": ["labels": ["team": "storage"]]])
            guard case .enabled(let period) = try await harness.mode(config.maintenance).enable(reason: "r", by: "a@b", notify: false, now: Self.t0) else {
                Issue.record("not enabled")
                return
            }
            #expect(period.suspended == ["HelmRelease/longhorn-system/longhorn"])
            #expect(try await harness.suspension().filter(\.value).keys.sorted() == ["HelmRelease/longhorn-system/longhorn"])
        }
    }

    /// Around a rollout: on for it, kept on by its resume, and an operator's maintenance mode is
    /// never switched off by a rollout.
    @Test func aRolloutHoldsAndReleasesOnlyItsOwn() async throws {
        try await Self.with { harness in
            let mode = harness.mode()
            #expect(try await mode.hold(forRollout: "r1", by: "a@b", now: Self.t0) == .enabledNow)
            #expect(try await mode.hold(forRollout: "r1", by: "a@b", now: Self.t0) == .keptOn)
            #expect(try await mode.current().cluster?.rollout == "r1")
            try await mode.release(forRollout: "r2", by: "a@b", now: Self.t0)
            #expect(try await harness.configMap() != nil, "another rollout's release leaves it on")
            try await mode.release(forRollout: "r1", by: "a@b", now: Self.t0)
            #expect(try await harness.configMap() == nil)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })

            _ = try await mode.enable(reason: "operator", by: "a@b", notify: false, now: Self.t0)
            #expect(try await mode.hold(forRollout: "r3", by: "a@b", now: Self.t0) == .notOurs)
            try await mode.release(forRollout: "r3", by: "a@b", now: Self.t0)
            #expect(try await harness.configMap() != nil)
            #expect(try await harness.suspension().values.allSatisfy { $0 })
        }
    }

    /// A record names at most `objectsMax` objects; more is refused before anything is written.
    @Test func moreObjectsThanARecordHoldsAreRefusedUntouched() async throws {
        try await Self.with { (harness: Harness) async throws in
            var mode = harness.mode()
            mode.objectsMax = 3
            await #expect(throws: MaintenanceError.tooManyObjects(4, max: 3)) {
                _ = try await mode.enable(reason: "r", by: "a@b", notify: false, now: Self.t0)
            }
            #expect(try await harness.configMap() == nil)
            #expect(try harness.store.openMaintenancePeriod() == nil)
            #expect(try await harness.suspension().values.allSatisfy { !$0 })
        }
    }

    @Test(arguments: [
        ("maintenance:\n  suspend: [kustomization]\n", "maintenance.suspend", "is not a kind of Flux object"),
        ("maintenance:\n  suspend: []\n", "maintenance.suspend", "at least one kind"),
        ("maintenance:\n  suspendSelector: \"=storage\"\n", "maintenance.suspendSelector", "label selector"),
        ("maintenance:\n  suspendFlux: sometimes\n", "maintenance.suspendFlux", "must be true or false"),
    ])
    func badMaintenanceSettingsAreNamed(yaml: String, field: String, problem: String) {
        do {
            _ = try ControllerConfig.parse(yaml, file: "/u.yaml")
            Issue.record("accepted \(yaml)")
        } catch {
            #expect(error.field == field && error.problem.contains(problem), "\(error)")
        }
    }
}
