import UpkeepKube

/// What a drain does with each pod on the node, decided before anything is evicted. Pure.
public enum PodDecision: Equatable, Sendable {
    case evict
    /// Left alone (DaemonSet or mirror pod, not selected, already finished).
    case skip(String)
    /// Stops the whole drain before any eviction, as `kubectl drain` does.
    case block(String)
}

public struct DrainOptions: Equatable, Sendable {
    public var timeoutSeconds: Int
    /// Overrides each pod's terminationGracePeriodSeconds; nil keeps the pod's own.
    public var gracePeriodSeconds: Int?
    /// Evict pods with emptyDir volumes (their data is lost); when false such pods block the drain.
    public var deleteEmptyDirData: Bool
    /// Only pods matching this label selector are evicted.
    public var podSelector: LabelSelector?
    /// A pod whose deletionTimestamp is more than this many seconds past counts as gone instead
    /// of being waited for (kubectl's `--skip-wait-for-delete-timeout`); nil: wait for every pod.
    public var skipWaitForDeleteTimeoutSeconds: Int?
    /// Delete pods instead of evicting them (kubectl's `--disable-eviction`): no budget is consulted.
    public var disableEviction: Bool

    public init(timeoutSeconds: Int, gracePeriodSeconds: Int? = nil, deleteEmptyDirData: Bool = true, podSelector: LabelSelector? = nil,
                skipWaitForDeleteTimeoutSeconds: Int? = nil, disableEviction: Bool = false) {
        self.timeoutSeconds = timeoutSeconds
        self.gracePeriodSeconds = gracePeriodSeconds
        self.deleteEmptyDirData = deleteEmptyDirData
        self.podSelector = podSelector
        self.skipWaitForDeleteTimeoutSeconds = skipWaitForDeleteTimeoutSeconds
        self.disableEviction = disableEviction
    }

    /// The journal's fingerprint of these options: a repeated operation id with other options is a conflict.
    var fingerprint: String {
        var text = "drain \(timeoutSeconds) \(gracePeriodSeconds.map(String.init) ?? "-") \(deleteEmptyDirData) \(podSelector?.description ?? "")"
        // Appended only when set, so a drain recorded before these options existed keeps its fingerprint.
        if let skipWaitForDeleteTimeoutSeconds { text += " skip-wait \(skipWaitForDeleteTimeoutSeconds)" }
        if disableEviction { text += " delete" }
        return text
    }
}

public enum DrainPlan {
    public static func decide(_ pod: Pod, options: DrainOptions) -> PodDecision {
        if pod.isMirrorPod { return .skip("mirror pod (static, managed by the kubelet)") }
        if pod.isDaemonSetPod { return .skip("DaemonSet pod") }
        if let selector = options.podSelector, !selector.matches(pod.labels) { return .skip("not selected by \(selector)") }
        if pod.phase == "Succeeded" || pod.phase == "Failed" { return .evict }
        if pod.controller == nil { return .block("has no controller; nothing would recreate it (delete it by hand)") }
        if pod.usesEmptyDir, !options.deleteEmptyDirData { return .block(emptyDirReason) }
        return .evict
    }

    /// Why a pod with an emptyDir volume refuses a drain without `deleteEmptyDirData`.
    public static let emptyDirReason = "uses emptyDir (its data would be lost)"
    /// Said once after the pods that refused for `emptyDirReason`.
    public static let emptyDirHint = "drain them with deleteEmptyDirData (policy.drain.deleteEmptyDirData, upkeep apply --delete-emptydir-data)"

    /// Delay before retrying an eviction a budget refused: 1 s, doubling, at most 5 s.
    public static func retryDelayMs(attempt: Int) -> Int64 {
        min(5_000, 1_000 << min(attempt, 3))
    }
}

extension DrainPlan {
    /// kubectl's rule for `--skip-wait-for-delete-timeout`: a pod is not waited for once `now`
    /// is more than `seconds` past its deletionTimestamp (the moment its grace period ends).
    public static func skipsWaiting(deletionTimestamp: Double?, now: Double, seconds: Int?) -> Bool {
        guard let seconds, seconds > 0, let deletionTimestamp else { return false }
        return now > deletionTimestamp + Double(seconds)
    }
}
