// The methods of a datastore restore (PROTOCOL.md section 12: restoreBackup, stopK3s, restore,
// rejoin), as k3s documents rolling a server back across a minor:
// https://docs.k3s.io/upgrades/roll-back, https://docs.k3s.io/datastore/backup-restore.

// MARK: restoreBackup

/// Receives a datastore backup (as `backup` streamed it) as the upload stream, for a later
/// `restore`. Servers only; nothing else on the node changes.
public struct RestoreBackupRequest: RequestMessage {
    public typealias Result = RestoreBackupResult
    public static let method = Method.restoreBackup
    public var operationID: OperationID
    /// Digest and length of the whole upload.
    public var sha256: SHA256Hex
    public var bytes: Int64
    public var format: BackupFormat
    /// The k3s version the backup was taken at.
    public var k3sVersion: String

    public init(operationID: OperationID, sha256: SHA256Hex, bytes: Int64, format: BackupFormat, k3sVersion: String) {
        self.operationID = operationID
        self.sha256 = sha256
        self.bytes = bytes
        self.format = format
        self.k3sVersion = k3sVersion
    }

    public func validate() throws(MessageError) {
        try checkText(k3sVersion, field: "restoreBackup.k3sVersion", bytesMax: 128)
        guard bytes >= 1 else { throw .invalid("restoreBackup.bytes must be at least 1 (is \(bytes))") }
    }

    public var payload: RequestPayload { .restoreBackup(self) }
}

public struct RestoreBackupResult: ResultMessage {
    /// The backup had been received before; the upload was only verified against it.
    public var alreadyReceived: Bool
    public init(alreadyReceived: Bool) { self.alreadyReceived = alreadyReceived }
}

// MARK: stopK3s

/// Stops the k3s unit and waits until it is inactive. Ends any install watch.
public struct StopK3sRequest: RequestMessage {
    public typealias Result = StopK3sResult
    public static let method = Method.stopK3s
    public var operationID: OperationID
    public init(operationID: OperationID) { self.operationID = operationID }
    public var payload: RequestPayload { .stopK3s(self) }
}

public struct StopK3sResult: ResultMessage {
    /// The unit was active before the stop.
    public var wasActive: Bool
    public init(wasActive: Bool) { self.wasActive = wasActive }
}

// MARK: restore

/// Servers only: stops k3s, makes a staged binary live, restores the datastore from a received
/// backup (etcd: `--cluster-reset --cluster-reset-restore-path`; SQLite: `state.db` and the token),
/// starts k3s and probes it. Ends any install watch.
public struct RestoreRequest: RequestMessage {
    public typealias Result = RestoreResult
    public static let method = Method.restore
    public var operationID: OperationID
    /// A backup received with `restoreBackup`.
    public var backupSHA256: SHA256Hex
    /// A staged k3s binary, which must report `k3sVersion`.
    public var binarySHA256: SHA256Hex
    public var k3sVersion: String
    public var healthTimeoutSeconds: Int
    /// A staged images tarball of `k3sVersion`; required on an air-gapped node.
    public var imagesSHA256: SHA256Hex?

    public init(operationID: OperationID, backupSHA256: SHA256Hex, binarySHA256: SHA256Hex, k3sVersion: String,
                healthTimeoutSeconds: Int, imagesSHA256: SHA256Hex? = nil) {
        self.operationID = operationID
        self.backupSHA256 = backupSHA256
        self.binarySHA256 = binarySHA256
        self.k3sVersion = k3sVersion
        self.healthTimeoutSeconds = healthTimeoutSeconds
        self.imagesSHA256 = imagesSHA256
    }

    public func validate() throws(MessageError) {
        try checkText(k3sVersion, field: "restore.k3sVersion", bytesMax: 128)
        try checkPositive(healthTimeoutSeconds, "restore.healthTimeoutSeconds", max: 3600)
    }

    public var payload: RequestPayload { .restore(self) }
}

/// What `restore` and `rejoin` answer: the version running now, healthy.
public struct RestoreResult: ResultMessage {
    public var k3sVersion: String
    public var probe: ProbeResult

    public init(k3sVersion: String, probe: ProbeResult) {
        self.k3sVersion = k3sVersion
        self.probe = probe
    }
}

// MARK: rejoin

/// Servers other than the restoring one: stops k3s, makes a staged binary live, deletes
/// `server/db`, starts k3s (it joins the restored cluster) and probes it. Ends any install watch.
public struct RejoinRequest: RequestMessage {
    public typealias Result = RejoinResult
    public static let method = Method.rejoin
    public var operationID: OperationID
    public var binarySHA256: SHA256Hex
    public var k3sVersion: String
    public var healthTimeoutSeconds: Int
    /// A staged images tarball of `k3sVersion`; required on an air-gapped node.
    public var imagesSHA256: SHA256Hex?

    public init(operationID: OperationID, binarySHA256: SHA256Hex, k3sVersion: String, healthTimeoutSeconds: Int,
                imagesSHA256: SHA256Hex? = nil) {
        self.operationID = operationID
        self.binarySHA256 = binarySHA256
        self.k3sVersion = k3sVersion
        self.healthTimeoutSeconds = healthTimeoutSeconds
        self.imagesSHA256 = imagesSHA256
    }

    public func validate() throws(MessageError) {
        try checkText(k3sVersion, field: "rejoin.k3sVersion", bytesMax: 128)
        try checkPositive(healthTimeoutSeconds, "rejoin.healthTimeoutSeconds", max: 3600)
    }

    public var payload: RequestPayload { .rejoin(self) }
}

public typealias RejoinResult = RestoreResult
