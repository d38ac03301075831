import Foundation
import Testing
import UpkeepCore

@Suite struct K3sVersionParsingTests {
    @Test func releaseVersionHasItsParts() throws {
        let version = try K3sVersion("v1.30.6+k3s1")
        #expect(version.major == 1 && version.minor == 30 && version.patch == 6)
        #expect(version.k3sBuild == 1)
        #expect(version.preRelease.isEmpty)
        #expect(version.isRelease)
        #expect(version.minorLine.description == "v1.30")
        #expect(version.description == "v1.30.6+k3s1")
    }

    @Test func preReleaseIsNotARelease() throws {
        let version = try K3sVersion("v1.31.0-rc1+k3s1")
        #expect(version.preRelease == ["rc1"])
        #expect(version.isPreRelease && !version.isRelease)
        #expect(version.k3sBuild == 1)
        #expect(version.description == "v1.31.0-rc1+k3s1")
    }

    @Test func nonReleaseBuildHasNoBuildNumber() throws {
        let version = try K3sVersion("v1.31.5+k3s-39b54b9f")
        #expect(version.build == "k3s-39b54b9f")
        #expect(version.k3sBuild == nil)
        #expect(!version.isRelease)
        #expect(version.minorLine == MinorLine(major: 1, minor: 31))
    }

    @Test func leadingVAndSurroundingSpaceAreOptional() throws {
        #expect(try K3sVersion("1.28.11+k3s2\n") == K3sVersion("v1.28.11+k3s2"))
        #expect(try K3sVersion("  v1.28.11+k3s2").description == "v1.28.11+k3s2")
    }

    @Test(arguments: [
        ("", "empty k3s version"),
        ("v1.30", "has 2 dot-separated numbers"),
        ("v1.30.6.1+k3s1", "has 4 dot-separated numbers"),
        ("v1.3x.6+k3s1", "the minor version \"3x\""),
        ("v1.030.6+k3s1", "the minor version \"030\""),
        ("v1.30.+k3s1", "the patch version \"\""),
        ("v1.30.6+", "build part (after \"+\") is empty"),
        ("v1.30.6+k3s 1", "contains \" \""),
        ("v1.30.6-+k3s1", "pre-release part (after \"-\") has an empty identifier"),
        ("v1.30.6-rc_1+k3s1", "contains \"_\""),
        ("v1.999999.0+k3s1", "the minor version \"999999\""),
        ("latest", "has 1 dot-separated number "),
    ])
    func malformedTextSaysWhatIsWrong(text: String, expected: String) {
        #expect {
            try K3sVersion(text)
        } throws: { error in
            let description = (error as? K3sVersionError)?.description ?? ""
            return description.contains(expected) && description.contains("v1.30.6+k3s1")
        }
    }

    @Test func overlongTextIsRefused() {
        let text = "v1.30.6+k3s" + String(repeating: "1", count: 200)
        #expect(throws: K3sVersionError(text: text, problem: .tooLong(bytes: text.utf8.count))) {
            try K3sVersion(text)
        }
    }

    @Test func codableAsItsText() throws {
        let versions = try [K3sVersion("v1.30.6+k3s1"), K3sVersion("v1.31.0-rc1+k3s1")]
        let data = try JSONEncoder().encode(versions)
        #expect(String(decoding: data, as: UTF8.self) == #"["v1.30.6+k3s1","v1.31.0-rc1+k3s1"]"#)
        #expect(try JSONDecoder().decode([K3sVersion].self, from: data) == versions)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([K3sVersion].self, from: Data(#"["v1.30"]"#.utf8))
        }
    }

    @Test func minorLineParsesAndSteps() throws {
        let line = try MinorLine("v1.29")
        #expect(line.next.description == "v1.30")
        #expect(line.minorsUntil(try MinorLine("1.31")) == 2)
        #expect(line.minorsUntil(MinorLine(major: 2, minor: 0)) == nil)
        #expect(throws: K3sVersionError.self) { try MinorLine("v1.29.1") }
    }
}

@Suite struct K3sVersionOrderTests {
    /// Real-shaped tags in the order k3s means them.
    static let ascending = [
        "v1.28.4+k3s1", "v1.28.4+k3s2", "v1.28.11+k3s1",
        "v1.29.0-rc1+k3s1", "v1.29.0-rc2+k3s1", "v1.29.0-rc10+k3s1", "v1.29.0+k3s1",
        "v1.30.6+k3s1",
        "v1.31.5+k3s-39b54b9f", "v1.31.5+k3s1", "v1.31.5+k3s2",
        "v1.31.10+k3s1",
    ]

    @Test func sortsAsK3sMeansIt() throws {
        let versions = try Self.ascending.map { try K3sVersion($0) }
        for seed: UInt64 in 1...20 {
            var random = SeededGenerator(seed: seed)
            #expect(versions.shuffled(using: &random).sorted() == versions, "shuffled with seed \(seed)")
        }
        #expect(versions.reversed().sorted().map(\.description) == Self.ascending)
    }

    @Test func preReleaseComesBeforeItsRelease() throws {
        #expect(try K3sVersion("v1.31.0-rc1+k3s1") < K3sVersion("v1.31.0+k3s1"))
        #expect(try K3sVersion("v1.31.0-rc1+k3s1") > K3sVersion("v1.30.99+k3s1"))
        #expect(try K3sVersion("v1.31.0-alpha.1+k3s1") < K3sVersion("v1.31.0-alpha.beta+k3s1"))
        #expect(try K3sVersion("v1.31.0-1+k3s1") < K3sVersion("v1.31.0-alpha+k3s1"))
    }

    @Test func orderIsTotalAndConsistentWithEquality() throws {
        let versions = try (Self.ascending + ["v1.31.5", "v1.31.5+k3s-aaaaaaaa"]).map { try K3sVersion($0) }
        for a in versions {
            for b in versions {
                let relations = [a < b, a == b, b < a].filter { $0 }.count
                #expect(relations == 1, "\(a) vs \(b)")
            }
        }
    }
}

@Suite struct K3sVersionOutputTests {
    @Test func twoLineOutput() throws {
        let output = try K3sVersionOutput(parsing: "k3s version v1.28.11+k3s1 (617b0e84)\ngo version go1.21.11\n")
        #expect(output.version == (try K3sVersion("v1.28.11+k3s1")))
        #expect(output.commit == "617b0e84")
        #expect(output.goVersion == "go1.21.11")
    }

    @Test func oneLineOldFormat() throws {
        let output = try K3sVersionOutput(parsing: "k3s version v1.17.4+k3s1 (3eee8ac3)\n")
        #expect(output.version.description == "v1.17.4+k3s1")
        #expect(output.commit == "3eee8ac3")
        #expect(output.goVersion == nil)
    }

    @Test func nonReleaseBuildIsTheThirdWord() throws {
        let output = try K3sVersionOutput(parsing: "k3s version v1.31.5+k3s-39b54b9f (39b54b9f)\ngo version go1.23.6\n")
        #expect(output.version.build == "k3s-39b54b9f")
        #expect(output.version.k3sBuild == nil)
    }

    @Test(arguments: ["", "\n\n", "Usage: k3s [global options]", "k3s v1.28.11+k3s1", "k3s version 1.28"])
    func otherOutputIsRefused(output: String) {
        #expect(throws: K3sVersionError.self) { try K3sVersionOutput(parsing: output) }
    }

    @Test func refusalQuotesTheFirstLine() {
        #expect(throws: K3sVersionError(text: "bash: k3s: not found", problem: .notVersionOutput(firstLine: "bash: k3s: not found"))) {
            try K3sVersionOutput(parsing: "bash: k3s: not found")
        }
    }
}
