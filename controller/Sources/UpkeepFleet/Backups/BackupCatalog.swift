import UpkeepCore

/// What a backup is taken for, as the controller records it (docs/backups.md).
public struct BackupPurpose: Equatable, Sendable {
    public var rolloutID: String?
    /// The hop of `rolloutID` it is taken before.
    public var hop: Int?
    /// The k3s version of the server it is taken on.
    public var k3sVersion: K3sVersion?

    public init(rolloutID: String?, hop: Int?, k3sVersion: K3sVersion?) {
        self.rolloutID = rolloutID
        self.hop = hop
        self.k3sVersion = k3sVersion
    }
}

/// The controller's sealed backups as the agent transport needs them: the vault to seal into
/// and open from, and a record of each (the state database, behind this protocol, so the
/// transport does no bookkeeping of its own). It must never hand out a plaintext path.
public protocol BackupCatalog: Sendable {
    var vault: BackupVault { get }
    /// How long one backup may take to stream from an agent.
    var timeoutSeconds: Int { get }
    /// The backup recorded under `id`, if any.
    func recorded(id: String) throws -> TakenBackup?
    /// Records a backup just sealed; throws when it cannot (the caller removes the sealed file).
    func record(_ backup: TakenBackup, purpose: BackupPurpose) throws
}
