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

    public init(timeoutSeconds: Int, gracePeriodSeconds: Int? = nil, deleteEmptyDirData: Bool = true, podSelector: LabelSelector? = nil) {
        self.timeoutSeconds = timeoutSeconds
        self.gracePeriodSeconds = gracePeriodSeconds
        self.deleteEmptyDirData = deleteEmptyDirData
        self.podSelector = podSelector
    }
}

public enum DrainPlan {
    public static func decide(_ pod: Pod, options: DrainOptions) -> PodDecision {
        if pod.isMirrorPod { return .skip("mirror pod (static, managed by the kubelet)") }
        if pod.isDaemonSetPod { return .skip("DaemonSet pod") }
        if let selector = options.podSelector, !selector.matches(pod.labels) { return .skip("not selected by \(selector)") }
        if pod.phase == "Succeeded" || pod.phase == "Failed" { return .evict }
        if pod.controller == nil { return .block("has no controller; nothing would recreate it (delete it by hand)") }
        if pod.usesEmptyDir, !options.deleteEmptyDirData { return .block("uses emptyDir (its data would be lost); drain with deleteEmptyDirData") }
        return .evict
    }

    /// Delay before retrying an eviction a budget refused: 1 s, doubling, at most 5 s.
    public static func retryDelayMs(attempt: Int) -> Int64 {
        min(5_000, 1_000 << min(attempt, 3))
    }
}
