import UpkeepCore

/// The UTC offsets of one time zone over time, as a TZif file of the IANA time zone database
/// gives them (RFC 8536, https://www.rfc-editor.org/rfc/rfc8536): the offset before the first
/// transition, the transitions, and the POSIX rule for every moment after the last one. What
/// the maintenance windows need to turn a local time into UTC and back.
///
/// Pure: it never reads the zone database itself; the controller reads a zone's file at its edge
/// (`TZif.parse`) and hands the rule in. Rules are compared and persisted whole.
public struct TimeZoneRule: Hashable, Sendable, Codable, CustomStringConvertible {
    /// One offset from UTC, as a zone shows it.
    public struct Offset: Hashable, Sendable, Codable {
        /// Seconds east of UTC (Berlin in winter: 3600).
        public let seconds: Int
        public let isDaylight: Bool
        /// `CET`, `EDT`, `+03`.
        public let abbreviation: String

        public init(seconds: Int, isDaylight: Bool, abbreviation: String) {
            self.seconds = seconds
            self.isDaylight = isDaylight
            self.abbreviation = abbreviation
        }
    }

    /// From `at` (UTC seconds since the epoch) on, `offset` applies.
    public struct Transition: Hashable, Sendable, Codable {
        public let at: Int64
        public let offset: Offset
    }

    /// The IANA name (`Europe/Berlin`), or `UTC`.
    public let name: String
    /// Before the first transition (with none, and no rule: always).
    let initial: Offset
    /// In time order.
    let transitions: [Transition]
    /// After the last transition (or always, when there is none).
    let rule: PosixTimeZone?

    public var description: String { name }

    /// Coordinated Universal Time: a window that names no zone is in it.
    public static let utc = TimeZoneRule(name: "UTC", initial: Offset(seconds: 0, isDaylight: false, abbreviation: "UTC"), transitions: [], rule: nil)

    /// `transitions` must be in strictly increasing time order (`TZif.parse` checks it).
    init(name: String, initial: Offset, transitions: [Transition], rule: PosixTimeZone?) {
        self.name = name
        self.initial = initial
        self.transitions = transitions
        self.rule = rule
    }

    /// The offset in force at `instant`.
    public func offset(at instant: Instant) -> Offset {
        offset(atSeconds: CivilDate.floorDivide(instant.milliseconds, 1000))
    }

    func offset(atSeconds seconds: Int64) -> Offset {
        guard let last = transitions.last else { return rule?.offset(atSeconds: seconds) ?? initial }
        if seconds >= last.at { return rule?.offset(atSeconds: seconds) ?? last.offset }
        // The last transition at or before `seconds`, by bisection.
        var low = 0, high = transitions.count
        while low < high {
            let middle = (low + high) / 2
            if transitions[middle].at <= seconds { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? initial : transitions[low - 1].offset
    }

    /// The changes of offset in `(after, through]` (UTC seconds), in order.
    func changes(after: Int64, through: Int64) -> [Transition] {
        guard after < through else { return [] }
        var out: [Transition] = []
        var current = offset(atSeconds: after)
        for transition in transitions where transition.at > after && transition.at <= through {
            // From the last transition on the rule answers (RFC 8536 3.3), so ask, not assume.
            let next = offset(atSeconds: transition.at)
            if next != current {
                out.append(Transition(at: transition.at, offset: next))
                current = next
            }
        }
        if let rule {
            let ruleFrom = max(after, transitions.last?.at ?? after)
            for change in rule.changes(after: ruleFrom, through: through) where change.offset != current {
                out.append(change)
                current = change.offset
            }
        }
        return out
    }

    /// The spans of constant offset covering `[from, to)` (UTC seconds), in order.
    func spans(from: Int64, to: Int64) -> [(start: Int64, end: Int64, offset: Offset)] {
        var out: [(start: Int64, end: Int64, offset: Offset)] = []
        var start = from
        var current = offset(atSeconds: from)
        for change in changes(after: from, through: to - 1) {
            out.append((start, change.at, current))
            start = change.at
            current = change.offset
        }
        out.append((start, to, current))
        return out
    }

    /// The same zone for every moment at or after `start`, without what came before: the
    /// transitions after it that its rule does not already give. A few bytes instead of a
    /// century of history, for a rule persisted with every rollout state. Earlier moments get
    /// the offset in force at `start` (or the rule's).
    public func from(_ start: Instant) -> TimeZoneRule {
        let seconds = CivilDate.floorDivide(start.milliseconds, 1000)
        let before = offset(atSeconds: seconds)
        var kept = transitions.filter { $0.at > seconds }
        // The tail the rule reproduces (a "fat" file lists the rule's changes up to 2037) goes:
        // without the last transition the rule answers from the one before it (or from
        // `start`), so it must give that one's offset there and change nothing until the last.
        if let rule {
            while let last = kept.last {
                let previous = kept.dropLast().last
                let (from, offset) = previous.map { ($0.at, $0.offset) } ?? (seconds, before)
                guard rule.offset(atSeconds: from) == offset, rule.changes(after: from, through: last.at - 1).isEmpty else { break }
                kept.removeLast()
            }
        }
        return TimeZoneRule(name: name, initial: before, transitions: kept, rule: rule)
    }
}

/// Where the maintenance windows get the zones they name: the controller's reads the system's
/// tzdata; tests give rules they made. A refusal is a `TimeZoneError` an operator can act on.
public protocol TimeZoneSource: Sendable {
    func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule
}

/// Knows `UTC` only: for windows read back from a rollout stored before zones, and for code
/// with no zone database at hand.
public struct UTCOnly: TimeZoneSource {
    public init() {}
    public func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule {
        guard TimeZoneRule.isUTC(name) else { throw TimeZoneError.unknownZone(name, directory: nil) }
        return .utc
    }
}

extension TimeZoneRule {
    /// `UTC` and `Etc/UTC` need no zone database.
    public static func isUTC(_ name: String) -> Bool { name == "UTC" || name == "Etc/UTC" }
}

/// Why a zone could not be had, in words that say what to do.
public enum TimeZoneError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No file for the name (`directory`: where it was looked for; nil: no database was asked).
    case unknownZone(String, directory: String?)
    /// Not an IANA name (`Europe/Berlin`): path separators out of place, `..`, odd characters.
    case badName(String)
    /// The file is not a TZif file we can read.
    case badFile(String, path: String, problem: String)
    /// A POSIX TZ rule that does not parse.
    case badRule(String, String)

    public var description: String {
        switch self {
        case .unknownZone(let name, let directory?):
            "no time zone \"\(name)\" in \(directory) (the system's tzdata): check the name (an IANA name such as Europe/Berlin "
                + "or America/New_York; ls \(directory)), or install the tzdata package"
        case .unknownZone(let name, nil):
            "time zone \"\(name)\" needs the zone database, which is not read here; only UTC is known"
        case .badName(let name):
            "\"\(name)\" is not a time zone name: write an IANA name such as Europe/Berlin (letters, digits, _, + and -, parts separated by /)"
        case .badFile(let name, let path, let problem):
            "time zone \"\(name)\": \(path) is not a readable TZif file (\(problem)); reinstall the tzdata package"
        case .badRule(let text, let problem):
            "the time zone rule \"\(text)\": \(problem)"
        }
    }
}
