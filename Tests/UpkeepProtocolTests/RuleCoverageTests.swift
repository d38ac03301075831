import Foundation
import Testing

/// Every MUST and SHOULD of PROTOCOL.md has a test named for it. A new rule in the
/// specification fails here until a test proves it and is listed below; a listed test that no
/// longer exists fails too.
@Suite struct RuleCoverageTests {
    static let directory = URL(filePath: #filePath).deletingLastPathComponent()

    /// A fragment of each rule's sentence, and the tests that prove it (functions in this target,
    /// for the agent's own behaviour in UpkeepAgentTests, for a renewal in UpkeepFleetTests).
    static let rules: [(sentence: String, tests: [String])] = [
        ("Ids MUST be non-zero and strictly increasing",
         ["requestIDsMustBeStrictlyIncreasing", "theClientNumbersItsRequestsUpward", "requestIDsMayHaveGaps"]),
        ("whose ids are exhausted (2³²−1) MUST be closed by the client", ["aConnectionWithItsIDsUsedUpIsClosed"]),
        ("Receivers MUST accept any valid JSON", ["anyValidJSONIsAccepted"]),
        ("Unknown keys MUST be ignored", ["anyValidJSONIsAccepted", "unknownFieldsAreIgnored"]),
        ("The client MUST NOT send anything else before HelloReply arrives", ["helloComesFirstAndAloneUntilHelloReply"]),
        ("the client SHOULD retry later with backoff", ["aConnectionOverTheLimitIsRefusedBusy", "busyOnConnectIsRetriedWithBackoff"]),
        ("MUST be true exactly for methods with an upload", ["theUploadFlagMustMatchTheMethod", "uploadFlagMustMatchTheMethod"]),
        ("servers SHOULD send at most a few per second per request", ["progressIsPaced"]),
        ("Unknown kinds MUST be ignored by clients", ["unknownProgressKindsAreIgnored"]),
        ("its data MUST NOT be used", ["aStreamWhoseChunkEndDoesNotMatchFails", "aMatchingStreamEndsVerified"]),
        ("a sender MUST NOT send a Chunk larger than its remaining credit",
         ["downloadCreditIsTheClientsWindow", "uploadCreditIsTheServersWindow", "aSenderWaitsForCredit"]),
        ("Receivers SHOULD batch updates", ["uploadCreditReturnsInQuarterWindows", "downloadCreditReturnsInQuarterWindows"]),
        ("a client SHOULD send its remaining time plus a small margin", ["timeoutMsIsTheRemainingTimePlusAMargin"]),
        ("the side that detects it SHOULD send an Error on request id 0",
         ["aMalformedFrameIsAViolation", "aFrameInTheWrongDirectionIsAViolation", "aViolationClosesAndFailsEveryCall"]),
        ("clients MUST treat unknown codes like `internal`", ["unknownErrorCodesAreTreatedLikeInternal"]),
        ("the other MUST answer with a Pong carrying the same 8 bytes", ["pingIsAnsweredWithTheSameBytes", "theClientAnswersPings"]),
        ("A side SHOULD NOT have more than one Ping outstanding", ["onePingAtATime"]),
        ("The client MUST NOT send new Requests on the connection", ["afterGoAwayNoNewRequests"]),
        ("MUST decode and re-encode to the same bytes", ["validVectorDecodesAndReencodesByteForByte"]),
        ("`invalid` entries MUST be refused with the named error",
         ["invalidVectorIsRefusedWithTheDocumentedError", "theInvalidGoldenVectorsAreRefusedAsNamed"]),
        // Rules of the agent's behaviour, proven in Tests/UpkeepAgentTests.
        ("A restart of the agent MUST NOT be reported as an outcome of the work",
         ["installKilledAtEveryStepIsResolvedByTheRestartedAgent", "anInstallKilledWhileItsHealthyNewK3sStartedIsInstalledAfterTheRestart",
          "anInstallFoundWithAThirdBinaryLiveIsInterruptedNotReverted", "killedInstallAlwaysLeavesARunnableBinaryAndAResolvedJournal"]),
        ("On a server, the agent MUST refuse (`conflict`) a rollback to a binary of an older Kubernetes minor",
         ["rollbackOfAServerAcrossAMinorAfterItWasHealthyIsRefusedWithWhatToDo", "rollbackWithinAMinorOrOfAnAgentNodeStillWorks",
          "aServerWhoseNewerMinorNeverRanHealthyMayGoBack"]),
        // A certificate renewal against a real agent, proven in Tests/UpkeepFleetTests.
        ("The agent MUST generate the key itself", ["theAgentMakesItsKeyTheCASignsAndTheNextConnectionShowsTheNewCertificate"]),
        ("While a pending key of the asked type exists it MUST answer a request for that same key",
         ["aCertificateThatDoesNotFitIsRefusedAndNothingChanges"]),
        ("The agent MUST answer `conflict`, and change nothing", ["aCertificateThatDoesNotFitIsRefusedAndNothingChanges"]),
    ]

    /// The sentences of PROTOCOL.md with MUST or SHOULD (the RFC 2119 key words), but the one
    /// that introduces them.
    static func ruleSentences() throws -> [String] {
        let text = try String(contentsOf: directory.appending(path: "../../protocol/PROTOCOL.md").standardized, encoding: .utf8)
        let paragraphs = text.components(separatedBy: "\n\n").map {
            $0.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        }
        let keyWord = try Regex(#"\b(MUST|SHOULD)\b"#)
        // A sentence ends at ".", ":" or ";" followed by a space and a capital, "(", "`" or "-".
        let boundary = try Regex(#"([.:;]) +(?=[A-Z(`-])"#)
        return paragraphs.flatMap { $0.replacing(boundary) { "\($0.output[1].substring ?? "")\n" }.split(separator: "\n") }
            .map(String.init)
            .filter { $0.contains(keyWord) && !$0.contains("are used as in RFC 2119") }
    }

    @Test func everyRuleOfTheSpecificationHasANamedTest() throws {
        let sentences = try Self.ruleSentences()
        #expect(sentences.count >= 20, "the rules were found")
        for sentence in sentences {
            let covering = Self.rules.filter { sentence.contains($0.sentence) }
            #expect(!covering.isEmpty, "no test is listed for: \(sentence)")
        }
        for rule in Self.rules {
            #expect(sentences.contains { $0.contains(rule.sentence) }, "listed rule no longer in PROTOCOL.md: \(rule.sentence)")
        }
    }

    @Test func everyListedTestExists() throws {
        let agentTests = Self.directory.appending(path: "../UpkeepAgentTests").standardized
        let fleetTests = Self.directory.appending(path: "../UpkeepFleetTests").standardized
        let files = try [Self.directory, agentTests, fleetTests].flatMap { try FileManager.default.contentsOfDirectory(at: $0, includingPropertiesForKeys: nil) }
            .filter { $0.pathExtension == "swift" }
        let source = try files.map { try String(contentsOf: $0, encoding: .utf8) }.joined(separator: "\n")
        for name in Self.rules.flatMap(\.tests) {
            #expect(source.contains("func \(name)("), "\(name) is listed but not defined")
        }
    }
}
