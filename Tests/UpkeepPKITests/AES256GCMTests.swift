import Testing
import UpkeepPKI

/// AES-256-GCM against test case 16 of the GCM specification (McGrew and Viega, "The Galois/Counter
/// Mode of Operation", AES-256 with additional data; the same bytes Python's `cryptography`
/// produces), fed whole and in pieces, and refusing every kind of damage.
@Suite struct AES256GCMTests {
    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    static let nonce = hex("cafebabefacedbaddecaf888")
    static let plaintext = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    static let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    static let ciphertext = hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662")
    static let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b")

    /// Feeds `input` in pieces of `piece` bytes.
    static func run(_ cipher: AES256GCM, _ input: [UInt8], piece: Int) throws -> [UInt8] {
        var output: [UInt8] = []
        var offset = 0
        while offset < input.count {
            let end = min(offset + piece, input.count)
            output += try cipher.update(Array(input[offset..<end]))
            offset = end
        }
        return output
    }

    @Test(arguments: [1, 7, 16, 1000])
    func sealsTheSpecificationVector(piece: Int) throws {
        let cipher = try AES256GCM(key: Self.key, nonce: Self.nonce, direction: .sealing)
        try cipher.authenticate(Self.aad)
        #expect(try Self.run(cipher, Self.plaintext, piece: piece) == Self.ciphertext)
        #expect(try cipher.finishTag() == Self.tag)
    }

    @Test(arguments: [1, 13, 1000])
    func opensTheSpecificationVector(piece: Int) throws {
        let cipher = try AES256GCM(key: Self.key, nonce: Self.nonce, direction: .opening)
        try cipher.authenticate(Self.aad)
        #expect(try Self.run(cipher, Self.ciphertext, piece: piece) == Self.plaintext)
        #expect(cipher.verify(tag: Self.tag))
    }

    enum Damage: CaseIterable { case ciphertextBit, tagBit, additionalData, shortTag, nonce }

    @Test(arguments: Damage.allCases)
    func anyDamageFailsTheTag(_ damage: Damage) throws {
        var ciphertext = Self.ciphertext, tag = Self.tag, aad = Self.aad, nonce = Self.nonce
        switch damage {
        case .ciphertextBit: ciphertext[17] ^= 0x01
        case .tagBit: tag[15] ^= 0x80
        case .additionalData: aad[0] ^= 0x01
        case .shortTag: tag.removeLast()
        case .nonce: nonce[0] ^= 0x01
        }
        let cipher = try AES256GCM(key: Self.key, nonce: nonce, direction: .opening)
        try cipher.authenticate(aad)
        _ = try cipher.update(ciphertext)
        #expect(!cipher.verify(tag: tag))
    }

    @Test func wrongKeyOrNonceLengthsAreRefusedByName() {
        #expect(throws: AEADError("an AES-256-GCM key is 32 bytes, not 16")) {
            try AES256GCM(key: Array(Self.key.prefix(16)), nonce: Self.nonce, direction: .sealing)
        }
        #expect(throws: AEADError("an AES-256-GCM nonce is 12 bytes, not 16")) {
            try AES256GCM(key: Self.key, nonce: Self.key.prefix(16).map { $0 }, direction: .opening)
        }
    }

    @Test func secureRandomDrawsFreshBytes() throws {
        let draws = try (0..<64).map { _ in try SecureRandom.bytes(AES256GCM.nonceBytes) }
        #expect(draws.allSatisfy { $0.count == 12 })
        #expect(Set(draws.map { $0.description }).count == 64)
    }
}
