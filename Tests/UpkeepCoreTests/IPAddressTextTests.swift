import Glibc
import Testing
import UpkeepCore

/// IP literals read without a socket library, judged against the C library's `inet_pton`.
@Suite struct IPAddressTextTests {
    static let samples = [
        "10.43.0.1", "0.0.0.0", "255.255.255.255", "198.18.0.7",
        "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1..3.4", "+1.2.3.4", " 1.2.3.4", "1.2.3.4 ",
        "::", "::1", "fd00::1", "FD00:0:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
        "1::8", "::ffff:10.0.0.1", "64:ff9b::192.0.2.33", "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":::", "1:::2", "1::2::3", ":1::2", "1::2:", "12345::1",
        "g::1", "fe80::1%eth0", "::1.2.3", "1.2.3.4::", "::ffff:256.0.0.1", "1:2:3:4:5:6:7:1.2.3.4",
        "", ":", "node-2.example", "localhost",
    ]

    @Test(arguments: samples) func agreesWithInetPton(_ text: String) {
        var four = in_addr()
        var sixteen = in6_addr()
        let libc4 = inet_pton(AF_INET, text, &four) == 1
        let libc6 = inet_pton(AF_INET6, text, &sixteen) == 1
        #expect((IPAddressText.ipv4(text) != nil) == libc4, "ipv4(\(text))")
        #expect((IPAddressText.ipv6(text) != nil) == libc6, "ipv6(\(text))")
        #expect(IPAddressText.isLiteral(text) == (libc4 || libc6))
        if libc6, let octets = IPAddressText.ipv6(text) {
            let expected = withUnsafeBytes(of: &sixteen) { Array($0) }
            #expect(octets == expected, "octets of \(text)")
        }
        if libc4, let octets = IPAddressText.ipv4(text) {
            let expected = withUnsafeBytes(of: &four) { Array($0) }
            #expect(octets == expected, "octets of \(text)")
        }
    }
}
