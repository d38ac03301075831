/// The key algorithms Upkeep generates. P-256 is the default because every TLS peer speaks it;
/// Ed25519 gives smaller, faster keys where all peers are OpenSSL 1.1.1+.
public enum KeyType: String, Sendable, CaseIterable {
    case ecdsaP256 = "ecdsa-p256"
    case ed25519
}
