import Foundation
import UpkeepKube

/// One attached volume as an engine upgrade sees it.
struct EngineVolume: Equatable {
    var name: String
    var state: String
    var robustness: String
    /// `spec.image`: the engine image it should run.
    var image: String
    /// `status.currentImage`: the one it runs.
    var currentImage: String

    init(name: String, state: String, robustness: String, image: String, currentImage: String) {
        (self.name, self.state, self.robustness, self.image, self.currentImage) = (name, state, robustness, image, currentImage)
    }

    init(_ volume: LonghornVolume) {
        self.init(name: volume.name, state: volume.state, robustness: volume.robustness, image: volume.image, currentImage: volume.currentImage)
    }
}

/// What to do next so that every attached volume runs `engine` and is healthy, after Longhorn's
/// manager was upgraded. Longhorn upgrades engines itself when its setting
/// `concurrent-automatic-engine-upgrade-per-node-limit` is above 0, at most that many volumes per
/// node at once (https://longhorn.io/docs/1.12.2/deploy/upgrade/auto-upgrade-engine/,
/// https://longhorn.io/docs/latest/references/settings/#concurrent-automatic-engine-upgrade-per-node-limit); at 0 each
/// volume's engine is upgraded by setting its `spec.image`, live for an attached volume
/// (https://longhorn.io/docs/1.12.2/deploy/upgrade/upgrade-engine/): Upkeep does it one volume
/// at a time, each healthy first. Pure: volumes in, the next step out.
enum EngineUpgradeStep: Equatable {
    case done
    case waiting(String)
    /// Set this volume's `spec.image` to the new engine image.
    case upgrade(String)

    static func next(_ volumes: [EngineVolume], engine: String, automaticPerNode: Int) -> EngineUpgradeStep {
        let attached = volumes.filter { $0.state == "attached" }.sorted { $0.name < $1.name }
        let behind = attached.filter { $0.currentImage != engine }
        let unhealthy = attached.filter { $0.robustness != "healthy" }
        if behind.isEmpty {
            return unhealthy.isEmpty ? .done : .waiting("volumes not healthy after their engine upgrade: \(Self.names(unhealthy))")
        }
        if let moving = behind.first(where: { $0.image == engine }) {
            return .waiting("\(moving.name) is upgrading its engine to \(engine) (runs \(moving.currentImage.isEmpty ? "unknown" : moving.currentImage))")
        }
        if automaticPerNode > 0 {
            return .waiting("Longhorn upgrades the engines itself (concurrent-automatic-engine-upgrade-per-node-limit \(automaticPerNode)): "
                            + "\(Self.names(behind)) still run an older engine")
        }
        if !unhealthy.isEmpty { return .waiting("a live engine upgrade needs healthy volumes: \(Self.names(unhealthy))") }
        return .upgrade(behind[0].name)
    }

    private static func names(_ volumes: [EngineVolume]) -> String {
        volumes.prefix(5).map(\.name).joined(separator: ", ") + (volumes.count > 5 ? " and \(volumes.count - 5) more" : "")
    }
}

/// The I/O around `EngineUpgradeStep`: reads the new engine image (`default-engine-image`, which
/// the new manager sets) and the limit setting, sets one volume's `spec.image` at a time when
/// Longhorn does not upgrade engines itself, and waits (at most `timeoutSeconds`) until every
/// attached volume runs the new engine and is healthy.
struct LonghornEngineUpgrade {
    let kube: KubeClient
    var timeoutSeconds: Int
    var pollSeconds = 1.0
    static let limitSetting = "concurrent-automatic-engine-upgrade-per-node-limit"

    /// `.done`, or `.failed` naming what was still not so at the bound.
    func run(say: (String) -> Void) async -> ReconcileVerdict {
        let namespace = LonghornSnapshots.namespace
        let deadline = Date().addingTimeInterval(Double(timeoutSeconds))
        var last = "nothing read yet"
        var said = ""
        var announced = false
        while Date() < deadline {
            let engine = (try? await kube.get(LonghornSetting.self, "default-engine-image", namespace: namespace))?.value ?? ""
            let limitText = (try? await kube.get(LonghornSetting.self, Self.limitSetting, namespace: namespace))?.value ?? "0"
            if !engine.isEmpty, let volumes = try? await kube.list(LonghornVolume.self, namespace: namespace) {
                let limit = Int(limitText) ?? 0
                if !announced {
                    say(limit > 0 ? "engine upgrades: Longhorn upgrades attached volumes to \(engine) itself (\(Self.limitSetting) \(limit)); waiting"
                        : "engine upgrades: \(Self.limitSetting) is 0, so Upkeep upgrades each attached volume to \(engine), one at a time")
                    announced = true
                }
                switch EngineUpgradeStep.next(volumes.map(EngineVolume.init), engine: engine, automaticPerNode: limit) {
                case .done:
                    say("every attached volume runs engine \(engine) and is healthy")
                    return .done
                case .waiting(let reason):
                    last = reason
                case .upgrade(let name):
                    do {
                        _ = try await kube.patch(LonghornVolume.self, name, namespace: namespace, ["spec": ["image": .string(engine)]])
                        say("upgrading the engine of \(name) to \(engine) (spec.image)")
                        continue
                    } catch {
                        last = "cannot set spec.image of \(name): \(error)"
                    }
                }
            } else {
                last = engine.isEmpty ? "Longhorn's default-engine-image setting is not readable" : "cannot list Longhorn volumes"
            }
            if last != said {
                say("waiting: \(last)")
                said = last
            }
            try? await Task.sleep(nanoseconds: UInt64(pollSeconds * 1e9))
        }
        return .failed("engine upgrades not done within \(timeoutSeconds) s: \(last)")
    }
}
