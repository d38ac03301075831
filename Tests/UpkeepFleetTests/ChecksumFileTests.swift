import Testing
@testable import UpkeepFleet

@Suite struct ChecksumFileTests {
    @Test func findsTheBinaryLineAmongImageTarballs() {
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        let text = "\(a)  k3s-airgap-images-amd64.tar.gz\n\(b)  k3s\n"
        #expect(ChecksumFile.digest(of: "k3s", in: text) == b)
        #expect(ChecksumFile.digest(of: "k3s-arm64", in: text) == nil)
        #expect(ChecksumFile.digest(of: "k3s", in: "\(b.uppercased()) *k3s\r\n") == b)
        #expect(ChecksumFile.digest(of: "k3s", in: "xyz  k3s\n") == nil)
    }
}
