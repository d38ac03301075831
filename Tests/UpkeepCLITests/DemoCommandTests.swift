import Foundation
import Testing
import UpkeepTestSupport

/// `upkeep demo` as a new user runs it: the built binary, its output, and nothing left behind.
@Suite struct DemoCommandTests {
    @Test func theDemoShowsAVerifiedHandshakeAndBothRefusals() throws {
        let directory = try TemporaryDirectory()
        let pkiPath = directory.file("pki")
        let result = try UpkeepBinary.run(["demo", "--dir", pkiPath], timeoutSeconds: 60)
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("controller -> node-1: TLSv1.3"))
        #expect(result.output.contains("verified peer upkeep://agent/node-1"))
        #expect(result.output.contains("upkeep://agent/node-9 was dialled"))
        #expect(result.output.contains("for role agent, but only controller is accepted here"))
        let keyMode = try FileManager.default.attributesOfItem(atPath: "\(pkiPath)/agents/node-1.key")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
    }
}
