import UpkeepCore
import UpkeepKube
import UpkeepStore

/// Maintenance mode: Flux's reconciliation of the objects the configuration names suspended as
/// `flux suspend` does (`spec.suspend: true`, https://fluxcd.io/flux/cmd/flux_suspend_kustomization/),
/// the cluster marked with `MaintenanceRecord`'s ConfigMap, and later exactly those objects
/// resumed as `flux resume` does (`spec.suspend: false` and a reconcile requested,
/// https://fluxcd.io/flux/cmd/flux_resume_kustomization/). Objects suspended before it stay so.
///
/// Crash safety lives in the order of writes. Enable: list the objects, record the period
/// (state `enabling`, with what it is about to suspend) in the ConfigMap and then in the state
/// database, suspend, mark both `enabled`. Disable: mark `disabling`, resume what the record
/// names, delete the ConfigMap, mark the period `ended`. A crash anywhere leaves a record that
/// names every object that may have been suspended, so `disable` (or `enable` again) carries on
/// from it. The ConfigMap is the cluster's record and wins; the database's copy is read when the
/// ConfigMap is gone, and by `upkeep status` without asking the cluster.
struct MaintenanceMode {
    let kube: KubeClient
    let store: StateStore
    let settings: ControllerConfig.Maintenance
    let notifier: any MaintenanceNotifier
    /// Progress for the operator, one line each.
    let say: @Sendable (String) -> Void

    /// Before each write: why this run may no longer write (the lock the command holds was
    /// lost), nil while it may. A rollout's maintenance mode writes under the rollout's lock and
    /// leaves this as it is.
    var fence: @Sendable () -> String? = { nil }

    /// Objects one record may name: their list stays far below a ConfigMap's 1 MiB, and a
    /// suspend or resume of each stays a matter of minutes.
    var objectsMax = 5000

    /// The cluster's record (nil: no ConfigMap), and this controller's open period.
    func current() async throws -> (cluster: MaintenancePeriod?, local: MaintenancePeriod?) {
        let local = try storeCall { try store.openMaintenancePeriod() }
        do {
            return (try MaintenanceRecord.period(try await kube.get(.configMaps, MaintenanceRecord.name, namespace: MaintenanceRecord.namespace)), local)
        } catch let error as KubeAPIError where error.isNotFound {
            return (nil, local)
        } catch let error as MaintenanceError {
            throw error
        } catch {
            throw MaintenanceError.cluster("reading \(MaintenanceRecord.place): \(error)")
        }
    }

    enum Enabled: Equatable {
        /// Switched on now (or an interrupted enable finished).
        case enabled(MaintenancePeriod)
        /// It was on already: nothing changed.
        case alreadyOn(MaintenancePeriod)
    }

    /// Switches maintenance mode on, or finishes an enable that was interrupted.
    func enable(reason: String, by: String, rollout: String? = nil, notify: Bool, now: Instant) async throws -> Enabled {
        var period: MaintenancePeriod
        let (cluster, local) = try await current()
        if let cluster {
            switch cluster.state {
            case .enabled, .ended: return .alreadyOn(cluster)
            case .disabling: throw MaintenanceError.disableInterrupted(cluster)
            case .enabling:
                say("an enable of maintenance mode \(cluster.id) (since \(KubeTime.format(cluster.since.unixSeconds))) was interrupted; finishing it")
                period = cluster
            }
        } else if let local {
            guard local.state == .enabling else { throw MaintenanceError.configMapGone(local) }
            // Recorded here, then interrupted before or while the ConfigMap was made.
            say("an enable of maintenance mode \(local.id) was interrupted; finishing it")
            period = local
            try await createRecord(period)
        } else {
            let objects = try await listObjects()
            period = MaintenanceRecord.enabling(id: Self.newID(now), objects: objects, since: now, reason: reason, by: by, rollout: rollout)
            // Both records before the first object is touched: whatever happens next, they name it.
            try await createRecord(period)
            try storeCall { try store.saveMaintenancePeriod(period) }
        }
        for text in period.suspended {
            guard let ref = FluxObjectRef(text) else { continue }
            if try await setSuspended(ref, true, now: now) { say("suspended \(ref)") } else { say("\(ref) is gone; nothing to suspend") }
        }
        period.state = .enabled
        try await patchRecordState(.enabled)
        try storeCall { try store.saveMaintenancePeriod(period) }
        await tell(.enabled, period, notify: notify, now: now)
        return .enabled(period)
    }

    enum Disabled: Equatable {
        /// Every object it suspended was resumed; `gone` were deleted meanwhile.
        case disabled(MaintenancePeriod, gone: [String])
        /// It was not on.
        case wasOff
    }

    /// Resumes what maintenance mode suspended and removes its record; finishes a disable that
    /// was interrupted, and works from this controller's record when the ConfigMap is gone.
    func disable(by: String, notify: Bool, now: Instant) async throws -> Disabled {
        let (cluster, local) = try await current()
        guard var period = cluster ?? local else { return .wasOff }
        if cluster == nil { say("\(MaintenanceRecord.place) is gone; resuming what this controller recorded for \(period.id)") }
        if period.state != .disabling {
            period.state = .disabling
            if cluster != nil { try await patchRecordState(.disabling) }
            try storeCall { try store.saveMaintenancePeriod(period) }
        }
        var gone: [String] = []
        for text in period.suspended {
            guard let ref = FluxObjectRef(text) else { continue }
            if try await setSuspended(ref, false, now: now) { say("resumed \(ref)") } else { gone.append(text) }
        }
        if cluster != nil {
            try fenced()
            do {
                try await kube.delete(.configMaps, MaintenanceRecord.name, namespace: MaintenanceRecord.namespace)
            } catch let error as KubeAPIError where error.isNotFound {
                // Deleted meanwhile: the aim.
            } catch {
                throw MaintenanceError.cluster("deleting \(MaintenanceRecord.place): \(error)")
            }
        }
        period.state = .ended
        period.endedAt = now
        period.endedBy = by
        try storeCall { try store.saveMaintenancePeriod(period) }
        // Another period this controller still holds open (the cluster's record was another
        // controller's): the cluster is out of maintenance now, so it ends too.
        if var other = local, other.id != period.id {
            other.state = .ended
            other.endedAt = now
            other.endedBy = by
            try storeCall { try store.saveMaintenancePeriod(other) }
        }
        await tell(.disabled, period, notify: notify, now: now)
        return .disabled(period, gone: gone)
    }

    // MARK: - Around a rollout (`maintenance.suspendFlux`)

    enum Hold: Equatable {
        /// Switched on for the rollout now.
        case enabledNow
        /// On for the rollout already (an earlier run of it).
        case keptOn
        /// On for an operator or another rollout: left as it is, and never switched off by this one.
        case notOurs
    }

    /// Before rollout `id` touches a node: on for it, unless maintenance mode is on already.
    func hold(forRollout id: String, by: String, now: Instant) async throws -> Hold {
        let (cluster, local) = try await current()
        if let on = cluster ?? local, on.rollout != id {
            say("maintenance mode is on already (\(on.id), by \(on.by): \(on.reason)); the rollout leaves it as it is")
            return .notOurs
        }
        switch try await enable(reason: "rollout \(id)", by: by, rollout: id, notify: true, now: now) {
        case .enabled(let period):
            say("maintenance mode \(period.id) on for rollout \(id): \(period.suspended.count) Flux objects suspended")
            return .enabledNow
        case .alreadyOn(let period):
            say("maintenance mode \(period.id) stays on for rollout \(id)")
            return .keptOn
        }
    }

    /// The period on for rollout `id`, as this controller or the cluster records it.
    func held(forRollout id: String) async throws -> MaintenancePeriod? {
        let (cluster, local) = try await current()
        return [cluster, local].compactMap { $0 }.first { $0.rollout == id }
    }

    /// After rollout `id` finished: off, if it is on for it.
    func release(forRollout id: String, by: String, now: Instant) async throws {
        guard try await held(forRollout: id) != nil else { return }
        if case .disabled(let period, let gone) = try await disable(by: by, notify: true, now: now) {
            say("maintenance mode \(period.id) off: Flux resumed (\(period.suspended.count - gone.count) objects)")
        }
    }

    // MARK: - The cluster

    /// Every object of the configured kinds (and selector), in every namespace, and whether it
    /// is suspended: kind by kind in the configured order (Kustomizations first by default, so
    /// nothing is applied any more before HelmReleases stop), then by namespace and name.
    func listObjects() async throws -> [(ref: FluxObjectRef, suspended: Bool)] {
        var objects: [(ref: FluxObjectRef, suspended: Bool)] = []
        for kind in settings.suspend {
            let items: [JSON]
            do {
                items = try await kube.list(kind.resource, labelSelector: settings.suspendSelector)
            } catch let error as KubeAPIError where error.isNotFound {
                continue  // the kind is not installed (no CRD): nothing of it to suspend
            } catch {
                throw MaintenanceError.cluster("listing \(kind.rawValue): \(error)")
            }
            let found = items.compactMap { item -> (ref: FluxObjectRef, suspended: Bool)? in
                guard let name = item[path: "metadata", "name"]?.string, let namespace = item[path: "metadata", "namespace"]?.string else { return nil }
                return (FluxObjectRef(kind: kind, namespace: namespace, name: name), item[path: "spec", "suspend"]?.bool ?? false)
            }
            objects += found.sorted { ($0.ref.namespace, $0.ref.name) < ($1.ref.namespace, $1.ref.name) }
        }
        guard objects.count <= objectsMax else { throw MaintenanceError.tooManyObjects(objects.count, max: objectsMax) }
        return objects
    }

    /// `flux suspend` (`spec.suspend: true`) or `flux resume` (`spec.suspend: false` and a
    /// reconcile requested, as `flux resume` does). False when the object is gone.
    private func setSuspended(_ ref: FluxObjectRef, _ suspended: Bool, now: Instant) async throws -> Bool {
        try fenced()
        var patch: JSON = ["spec": ["suspend": .bool(suspended)]]
        if !suspended { patch["metadata"] = ["annotations": ["reconcile.fluxcd.io/requestedAt": .string(KubeTime.format(now.unixSeconds))]] }
        do {
            _ = try await kube.patch(ref.kind.resource, ref.name, namespace: ref.namespace, patch)
            return true
        } catch let error as KubeAPIError where error.isNotFound {
            return false
        } catch {
            throw MaintenanceError.cluster("\(suspended ? "suspending" : "resuming") \(ref): \(error)")
        }
    }

    private func createRecord(_ period: MaintenancePeriod) async throws {
        try fenced()
        do {
            _ = try await kube.create(.configMaps, MaintenanceRecord.configMap(period))
        } catch let error as KubeAPIError where error.isAlreadyExists {
            throw MaintenanceError.cluster("another controller switched maintenance mode on at the same moment; see `upkeep maintenance status`")
        } catch {
            throw MaintenanceError.cluster("writing \(MaintenanceRecord.place): \(error)")
        }
    }

    private func patchRecordState(_ state: MaintenancePeriod.State) async throws {
        try fenced()
        do {
            _ = try await kube.patch(.configMaps, MaintenanceRecord.name, namespace: MaintenanceRecord.namespace, ["data": ["state": .string(state.rawValue)]])
        } catch {
            throw MaintenanceError.cluster("marking \(MaintenanceRecord.place) \(state.rawValue): \(error)")
        }
    }

    /// Throws `lockLost` once `fence` says this run may no longer write.
    private func fenced() throws {
        if let lost = fence() { throw MaintenanceError.lockLost(lost) }
    }

    private func tell(_ name: MaintenanceEvent.Name, _ period: MaintenancePeriod, notify: Bool, now: Instant) async {
        guard notify, notifier.missingSink == nil else { return }
        do {
            try await notifier.emit(MaintenanceEvent(name: name, at: now, period: period))
        } catch {
            say("warning: the \(name.rawValue) notification was not handed over: \(error)")
        }
    }

    /// `m20261207-101500.042`, from the wall-clock moment (to the millisecond: an enable may
    /// follow a disable within the second).
    static func newID(_ now: Instant) -> String {
        let days = CivilDate.floorDivide(now.milliseconds, 86_400_000)
        let milliseconds = now.milliseconds - days * 86_400_000
        let seconds = milliseconds / 1000
        let (year, month, day) = CivilDate.date(days: days)
        func digits(_ value: Int64, _ count: Int) -> String { String(repeating: "0", count: max(0, count - "\(value)".count)) + "\(value)" }
        return "m\(year)\(digits(month, 2))\(digits(day, 2))-\(digits(seconds / 3600, 2))\(digits(seconds / 60 % 60, 2))\(digits(seconds % 60, 2))"
            + ".\(digits(milliseconds % 1000, 3))"
    }
}
