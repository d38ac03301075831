import Testing
import UpkeepCore
@testable import UpkeepCLI
import UpkeepUpdates

/// The targets `upkeep apply --all` gives Longhorn and Flux: Longhorn one minor at a time, Flux
/// its newest v2 release; pre-releases never, nothing when the installed one is current.
@Suite struct ApplyAllTargetsTests {
    static func versions(_ texts: [String]) -> [K3sVersion] {
        texts.compactMap { try? K3sVersion($0) }
    }

    static let longhorn = versions(["v1.6.3", "v1.7.2", "v1.7.3", "v1.8.0", "v1.8.2", "v1.9.0-rc1", "v1.10.0"])
    static let flux = versions(["v2.3.0", "v2.4.0", "v2.5.1", "v2.6.0-rc.1", "v3.0.0"])

    @Test func longhornTakesTheNewestOfTheNextMinorAndFluxItsNewestV2() throws {
        let v172 = try K3sVersion("v1.7.2")
        #expect(ApplyAllRun.nextVersion(.longhorn, installed: v172, releases: Self.longhorn)?.description == "v1.8.2",
                "the next minor's newest, not v1.10 two minors up")
        #expect(ApplyAllRun.nextVersion(.longhorn, installed: try K3sVersion("v1.8.2"), releases: Self.longhorn) == nil,
                "v1.9 has only a release candidate, and v1.10 skips it")
        #expect(ApplyAllRun.nextVersion(.flux, installed: try K3sVersion("v2.3.0"), releases: Self.flux)?.description == "v2.5.1",
                "straight to the newest v2, no release candidate, no v3")
        #expect(ApplyAllRun.nextVersion(.flux, installed: try K3sVersion("v2.5.1"), releases: Self.flux) == nil)
        #expect(ApplyAllRun.nextVersion(.k3s, installed: v172, releases: Self.longhorn) == nil, "k3s's target is apply's")
    }
}
