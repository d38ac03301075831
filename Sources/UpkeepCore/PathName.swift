/// The directory and last component of a path, as POSIX `dirname` and `basename` give them,
/// without Foundation (`NSString`'s path methods bring CoreFoundation into the agent, and
/// answer "" rather than "." for a bare file name).
public enum PathName {
    /// `dirname`: "." for a bare name, "/" for the root, trailing slashes ignored.
    public static func directory(_ path: String) -> String {
        var rest = Substring(path)
        while rest.count > 1 && rest.last == "/" { rest.removeLast() }
        guard let slash = rest.lastIndex(of: "/") else { return "." }
        rest = rest[..<slash]
        while rest.last == "/" { rest.removeLast() }
        return rest.isEmpty ? "/" : String(rest)
    }

    /// `basename`: the last component, trailing slashes ignored; "/" for the root.
    public static func base(_ path: String) -> String {
        var rest = Substring(path)
        while rest.count > 1 && rest.last == "/" { rest.removeLast() }
        guard rest != "/", let slash = rest.lastIndex(of: "/") else { return String(rest) }
        return String(rest[rest.index(after: slash)...])
    }
}
