import COpenSSLShims
import Synchronization

/// OpenSSL's error strings ("certificate verify failed"), which OpenSSL loads at its
/// initialisation into a table of its own: about 0.4 MiB that an idle process keeps for good,
/// measured on the static agent (docs/agent.md, "Measurements"). A process that cares (the
/// agent's daemon) calls `loadOnFirstError()` before any other OpenSSL use; the strings are then
/// loaded when an error is first put into words (`OpenSSLError.errors`, a peer that is not TLS), so
/// messages read the same. It must never be called after OpenSSL was used: OpenSSL would have
/// loaded the strings already and it would change nothing.
public enum OpenSSLErrorStrings {
    private enum Phase { case atInitialisation, deferred, loaded }
    private static let phase = Mutex(Phase.atInitialisation)

    /// Initialises OpenSSL without its error strings; they are loaded by `load()`.
    public static func loadOnFirstError() {
        phase.withLock { phase in
            guard phase == .atInitialisation else { return }
            if upkeep_OPENSSL_init_without_error_strings() == 1 { phase = .deferred }
        }
    }

    /// Loads the strings if `loadOnFirstError` deferred them; cheap once they are in.
    public static func load() {
        phase.withLock { phase in
            guard phase == .deferred else { return }
            upkeep_ERR_load_strings_of_every_library()
            phase = .loaded
        }
    }

    /// Whether the strings are deferred and not loaded yet (tests).
    public static var areDeferred: Bool { phase.withLock { $0 == .deferred } }
}
