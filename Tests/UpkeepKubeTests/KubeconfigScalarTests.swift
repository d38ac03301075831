import Testing
import UpkeepKube

/// Kubeconfig files as k3s and kubectl write them, read with Yams's basic resolver (every scalar
/// a string): booleans and nulls are read by their YAML 1.1 spellings, and names that look like
/// numbers stay names.
@Suite struct KubeconfigScalarTests {
    static func document(insecure: String, currentContext: String) -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: 1
          cluster:
            server: https://127.0.0.1:6443
            insecure-skip-tls-verify: \(insecure)
        users:
        - name: default
          user:
            token: abc
        contexts:
        - name: default
          context: {cluster: 1, user: default}
        current-context: \(currentContext)
        """
    }

    @Test(arguments: [("true", true), ("yes", true), ("ON", true), ("false", false), ("no", false), ("~", false)])
    func insecureSkipTLSVerifyReadsYAMLBooleans(_ spelling: String, _ expected: Bool) throws {
        let config = try Kubeconfig.parse(yaml: Self.document(insecure: spelling, currentContext: "default"), directory: "/")
        #expect(config.clusters["1"]?.insecureSkipTLSVerify == expected)
        #expect(config.clusters["1"]?.server == "https://127.0.0.1:6443")
        #expect(config.users["default"]?.token == "abc")
        #expect(config.currentContext == "default")
    }

    @Test(arguments: ["~", "null", "''"])
    func aNullCurrentContextIsAbsent(_ spelling: String) throws {
        let config = try Kubeconfig.parse(yaml: Self.document(insecure: "false", currentContext: spelling), directory: "/")
        #expect(config.currentContext == nil)
    }
}
