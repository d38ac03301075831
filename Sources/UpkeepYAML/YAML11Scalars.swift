/// YAML 1.1's plain spellings of booleans and null, as kubectl's and Yams's default resolvers
/// read them. `YAMLReader` keeps every scalar as text; the configuration and kubeconfig readers
/// read booleans and nulls by these spellings.
public enum YAML11Scalars {
    /// true/yes/on and false/no/off, each lowercase, capitalised or uppercase; nil otherwise.
    public static func boolean(_ text: String) -> Bool? { booleans[text] }

    /// The empty scalar, `~` and null in its three spellings.
    public static func isNull(_ text: String) -> Bool { ["", "~", "null", "Null", "NULL"].contains(text) }

    private static let booleans: [String: Bool] = {
        var table: [String: Bool] = [:]
        for (words, value) in [(["true", "yes", "on"], true), (["false", "no", "off"], false)] {
            for word in words {
                for spelling in [word, word.prefix(1).uppercased() + word.dropFirst(), word.uppercased()] { table[spelling] = value }
            }
        }
        return table
    }()
}
