import UpkeepCore

/// The Kubernetes version skew policy (kubernetes.io/releases/version-skew-policy) as far as a
/// k3s upgrade needs it: API servers within one minor of each other, and a kubelet never newer
/// than any API server and at most 3 minors older (2 when the kubelet is older than v1.25).
public enum SkewPolicy {
    /// How many minors a kubelet of `kubelet`'s line may lag behind the API servers.
    public static func kubeletLagMax(_ kubelet: MinorLine) -> Int {
        kubelet.major == 1 && kubelet.minor < 25 ? 2 : 3
    }

    /// Whether a kubelet on `kubelet` may talk to an API server on `server`.
    public static func kubeletAllowed(_ kubelet: MinorLine, server: MinorLine) -> Bool {
        guard let lag = kubelet.minorsUntil(server) else { return false }
        return lag >= 0 && lag <= kubeletLagMax(kubelet)
    }

    /// Whether two API servers may run side by side.
    public static func serversAllowed(_ a: MinorLine, _ b: MinorLine) -> Bool {
        guard let distance = a.minorsUntil(b) else { return false }
        return abs(distance) <= 1
    }
}
