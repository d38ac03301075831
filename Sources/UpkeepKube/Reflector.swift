import Logging
import NIOConcurrencyHelpers
import UpkeepHTTP

/// Keeps a copy of the objects of one resource type and tells its owner of every change: it
/// lists, then watches from the list's `resourceVersion`; a watch that ends (the server's
/// `timeoutSeconds`, a dropped connection, a reader that fell behind) resumes from the last
/// `resourceVersion` seen, after a backoff when it failed; `410 Gone` (an ERROR event or the
/// answer's status) lists again, as client-go's reflector does
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
///
/// Every wait is bounded: each request by the client's bounds and the watch's `timeoutSeconds`,
/// the backoff between failed attempts doubles from `backoffSecondsMin` up to
/// `backoffSecondsMax`; the events waiting for the owner by `KubeWatchBounds.piecesMax` (the
/// owner's `handle` is awaited, so a slow owner makes the stream back up until it is cut, and
/// the reflector resumes). Each bound reached and each failure is counted (`counts`) and logged
/// at most once a minute (`limits`).
///
/// A resource the API does not serve (`404`: its CustomResourceDefinition is not installed, as
/// for Longhorn's objects on a cluster without Longhorn) is nothing to watch, not a failure: the
/// owner is told once that there are no objects, and the reflector asks again every
/// `backoffSecondsMax`, so a resource installed later is followed from then on.
///
/// It decides nothing about the objects: the owner does, from `Update`s.
public final class Reflector: Sendable {
    public struct Bounds: Sendable, Equatable {
        public var watch: KubeWatchBounds
        public var backoffSecondsMin: Double
        public var backoffSecondsMax: Double

        public init(watch: KubeWatchBounds = KubeWatchBounds(), backoffSecondsMin: Double = 0.2, backoffSecondsMax: Double = 10) {
            self.watch = watch
            self.backoffSecondsMin = max(0.01, backoffSecondsMin)
            self.backoffSecondsMax = max(self.backoffSecondsMin, backoffSecondsMax)
        }
    }

    /// What the owner is told.
    public enum Update: Sendable, Equatable {
        /// A list: the objects there are now (a first list, or after 410 Gone).
        case listed([JSON], resourceVersion: String)
        /// One change, from the watch.
        case changed(KubeWatchEvent)
    }

    /// What happened so far.
    public struct Counts: Sendable, Equatable {
        public var lists = 0
        public var watches = 0
        /// Watches that ended without an error and were resumed from the last `resourceVersion`.
        public var resumes = 0
        /// 410 Gone: listed again.
        public var expired = 0
        /// Lists or watches that failed (a connection, a status other than 410); retried after a backoff.
        public var failures = 0
        public var events = 0
        /// Lists answered 404: the resource is not served (its CRD is not installed).
        public var notServed = 0
    }

    /// The bounds a reflector reaches, as `limits` counts them.
    public enum Limit: String, CaseIterable, Hashable, Sendable {
        /// A list or watch failed; retried after the backoff.
        case failed
        /// 410 Gone: the `resourceVersion` is older than the server keeps; listed again.
        case expired
        /// 404: the resource is not served; asked again after `backoffSecondsMax`.
        case notServed = "not_served"
    }

    public let client: KubeClient
    public let type: ResourceType
    public let namespace: String?
    public let labelSelector: LabelSelector?
    public let bounds: Bounds
    public let limits: LimitLog<Limit>
    private let state = NIOLockedValueBox(Counts())

    public init(client: KubeClient, type: ResourceType, namespace: String? = nil, labelSelector: LabelSelector? = nil,
                bounds: Bounds = Bounds(), logger: Logger = Logger(label: "upkeep.kube.reflector"))
    {
        self.client = client
        self.type = type
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.bounds = bounds
        limits = LimitLog(logger: logger, level: { $0 == .notServed ? .info : .warning })
    }

    public var counts: Counts { state.withLockedValue { $0 } }

    /// Lists and watches until the task is cancelled, handing every update to `handle` in order.
    public func run(_ handle: @Sendable (Update) async -> Void) async {
        var version: String?
        var backoff = bounds.backoffSecondsMin
        var absent = false  // the owner was told there are none: the resource is not served
        while !Task.isCancelled {
            do {
                if version == nil {
                    let listed = try await client.listWithVersion(type, namespace: namespace, labelSelector: labelSelector)
                    state.withLockedValue { $0.lists += 1 }
                    version = listed.resourceVersion
                    absent = false
                    await handle(.listed(listed.items, resourceVersion: listed.resourceVersion))
                }
                state.withLockedValue { $0.watches += 1 }
                let events = try await client.watch(type, namespace: namespace, resourceVersion: version, labelSelector: labelSelector,
                                                    bounds: bounds.watch)
                for try await event in events {
                    if event.kind == .error {
                        throw KubeAPIError(code: event.object["code"]?.int.map(Int.init) ?? 500, reason: event.object["reason"]?.string ?? "",
                                           message: event.object["message"]?.string ?? "")
                    }
                    if let seen = event.resourceVersion, !seen.isEmpty { version = seen }
                    if event.kind == .bookmark { continue }
                    state.withLockedValue { $0.events += 1 }
                    await handle(.changed(event))
                }
                state.withLockedValue { $0.resumes += 1 }
                backoff = bounds.backoffSecondsMin
            } catch let error as KubeAPIError where error.code == 410 {
                state.withLockedValue { $0.expired += 1 }
                limits.record(.expired, "watch of \(type.plural) from resourceVersion \(version ?? "") expired (\(error.message)); listing again")
                version = nil
            } catch let error as KubeAPIError where error.code == 404 {
                // Not served (a list), or no longer (its CRD deleted during a watch).
                state.withLockedValue { $0.notServed += 1 }
                limits.record(.notServed, "\(type.plural) (\(type.group)) are not served (\(error.message)); "
                    + "nothing to watch, asking again every \(bounds.backoffSecondsMax) s")
                version = nil
                if !absent {
                    absent = true
                    await handle(.listed([], resourceVersion: ""))
                }
                try? await Task.sleep(nanoseconds: UInt64(bounds.backoffSecondsMax * 1e9))
            } catch {
                if Task.isCancelled { return }
                state.withLockedValue { $0.failures += 1 }
                limits.record(.failed, "watch of \(type.plural) failed: \(error); again in \(backoff) s")
                try? await Task.sleep(nanoseconds: UInt64(backoff * 1e9))
                backoff = min(backoff * 2, bounds.backoffSecondsMax)
            }
        }
    }
}
