import Foundation
import Testing
import UpkeepCLI
import UpkeepNotify
import UpkeepStore
import UpkeepTestSupport
import UpkeepYAML

/// `notifications:` in upkeep.yaml: the names issue 17 fixed, and an error for each mistake an
/// operator can make, naming the file, line and field and saying what to write instead.
@Suite struct NotificationConfigTests {
    static let example = """
        cluster: prod-eu
        notifications:
          - type: webhook
            url: https://hooks.example/upkeep
            secretFile: /etc/upkeep/webhook.secret
            events: [rollout.started, rollout.finished, rollout.failed]
          - type: slack
            urlFile: slack.url
          - {type: ntfy, url: "http://127.0.0.1:8080/upkeep", name: local-ntfy}
          - {type: gotify, url: "http://gotify.lan", tokenFile: gotify.token, allowHTTP: true, timeoutSeconds: 5, attemptsMax: 3}
        """

    @Test func theIssuesExampleReadsWithKeysFiltersAndPaths() throws {
        let config = try ControllerConfig.parse(Self.example, file: "/etc/upkeep/upkeep.yaml")
        #expect(config.clusterName == "prod-eu")
        let sinks = config.notifications
        #expect(sinks.map(\.kind) == [.webhook, .slack, .ntfy, .gotify] && sinks.map(\.position) == [1, 2, 3, 4])
        #expect(sinks[0].events == [.rolloutStarted, .rolloutFinished, .rolloutFailed] && sinks[1].events == nil)
        #expect(sinks[0].key.hasPrefix("webhook-") && sinks[0].key.count == "webhook-".count + 8)
        #expect(sinks[1].urlFile == "/etc/upkeep/slack.url" && sinks[1].url == nil)
        #expect(sinks[2].key == "local-ntfy" && sinks[3].tokenFile == "/etc/upkeep/gotify.token")
        #expect(sinks[3].timeoutSeconds == 5 && sinks[3].attemptsMax == 3 && sinks[0].timeoutSeconds == 10 && sinks[0].attemptsMax == 12)
        let routing = config.notificationRouting
        #expect(routing.cluster == "prod-eu" && routing.sinks(for: .rolloutNodeDone) == [sinks[1].key, "local-ntfy", sinks[3].key])
        #expect(routing.sinks(for: .rolloutStarted).count == 4 && routing.sinks(for: .test).isEmpty)
        // A key does not move when the list is reordered.
        let reordered = try ControllerConfig.parse("notifications:\n  - {type: ntfy, url: \"http://127.0.0.1:8080/upkeep\"}\n"
                                                   + "  - {type: webhook, url: \"https://hooks.example/upkeep\", secretFile: /s}\n", file: "/u.yaml")
        #expect(reordered.notifications[1].key == sinks[0].key)
        #expect(try ControllerConfig.parse("agentPort: 1\n", file: "/u.yaml").notifications.isEmpty)
    }

    @Test func everyMistakeIsRefusedWithTheFieldAndWhatToDo() {
        let cases: [(String, String, String)] = [
            ("- {type: email, url: \"https://x\"}", "notifications[1].type", "is not a sink type; use one of webhook, slack, mattermost, teams, ntfy, gotify"),
            ("- {url: \"https://x\"}", "notifications[1].type", "is required"),
            ("- {type: slack}", "notifications[1].url", "is required (or urlFile"),
            ("- {type: slack, url: \"https://x\", urlFile: /f}", "notifications[1].urlFile", "give url or urlFile, not both"),
            ("- {type: webhook, url: \"https://x\"}", "notifications[1].secretFile", "is required for a webhook"),
            ("- {type: gotify, url: \"https://x\"}", "notifications[1].tokenFile", "is required for gotify"),
            ("- {type: slack, url: \"https://x\", tokenFile: /t}", "notifications[1].tokenFile", "its URL is the credential"),
            ("- {type: ntfy, url: \"https://x\", events: [rollout.started, rollout.exploded]}", "notifications[1].events",
             "\"rollout.exploded\" is not an event; known: update.available, rollout.started, rollout.node-done"),
            ("- {type: ntfy, url: \"https://x\", events: []}", "notifications[1].events", "lists no event"),
            ("- {type: ntfy, url: \"http://ntfy.example/t\"}", "notifications[1].url", "plain http:// to ntfy.example"),
            ("- {type: ntfy, url: \"ftp://x/t\"}", "notifications[1].url", "must start with http:// or https://"),
            ("- {type: ntfy, url: \"https://user:pw@x/t\"}", "notifications[1].url", "credentials in URLs are refused"),
            ("- {type: ntfy, url: \"https://x\", timeoutSeconds: 0}", "notifications[1].timeoutSeconds", "must be in 1...120"),
            ("- {type: ntfy, url: \"https://x\", colour: red}", "notifications[1].colour", "is not a known field"),
            ("- {type: ntfy, url: \"https://x\", name: \"a b\"}", "notifications[1].name", "must be 1 to 40 letters"),
            ("- {type: ntfy, url: \"https://x\"}\n  - {type: ntfy, url: \"https://x\"}", "notifications[2]", "has the key ntfy-"),
            ("- just-a-string", "notifications[1]", "must be a mapping of fields"),
        ]
        for (entry, field, problem) in cases {
            do {
                _ = try ControllerConfig.parse("notifications:\n  \(entry)\n", file: "/etc/upkeep/upkeep.yaml")
                Issue.record("accepted: \(entry)")
            } catch {
                #expect(error.field == field && error.problem.contains(problem) && error.file == "/etc/upkeep/upkeep.yaml", "\(entry): \(error)")
                #expect(error.line != nil, "\(entry): \(error)")
            }
        }
        do {
            _ = try ControllerConfig.parse("notifications: {type: slack}\n", file: "/u.yaml")
            Issue.record("a mapping instead of a list was accepted")
        } catch {
            #expect(error.field == "notifications" && error.problem.contains("must be a list of mappings"), "\(error)")
        }
        do {
            _ = try ControllerConfig.parse("cluster: \"prod eu\"\n", file: "/u.yaml")
            Issue.record("a cluster name with a space was accepted")
        } catch {
            #expect(error.field == "cluster", "\(error)")
        }
    }

    @Test func secretFilesMustExistBeOwnerOnlyAndNeverShowUpInErrors() throws {
        let directory = try TemporaryDirectory()
        let secret = try directory.write("hunter2-hmac-key\n", to: "webhook.secret")
        let yaml = "notifications:\n  - {type: webhook, url: \"https://hooks.example/x\", secretFile: webhook.secret}\n"
        let config = try ControllerConfig.parse(yaml, file: directory.file("upkeep.yaml"))
        chmod(secret, 0o644)
        #expect(throws: ConfigError.self) { try config.notifications[0].load() }
        do {
            _ = try config.notifications[0].load()
        } catch {
            #expect(error.field == "notifications[1].secretFile" && error.description.contains("chmod 600 \(secret)"), "\(error)")
            #expect(!error.description.contains("hunter2"))
        }
        chmod(secret, 0o600)
        let loaded = try config.notifications[0].load()
        #expect(!"\(loaded)".contains("hunter2") && "\(loaded)".contains("hooks.example"))
        unlink(secret)
        do {
            _ = try config.notifications[0].load()
            Issue.record("a missing secret file was accepted")
        } catch {
            #expect(error.field == "notifications[1].secretFile" && error.problem.contains("cannot read the token file \(secret)"), "\(error)")
        }

        // A URL kept in a file is checked like one written inline, and never repeated in errors.
        let urlFile = try directory.write("http://hooks.internal/services/T0/SECRET\n", to: "slack.url")
        chmod(urlFile, 0o600)
        let slack = try ControllerConfig.parse("notifications:\n  - {type: slack, urlFile: slack.url}\n", file: directory.file("upkeep.yaml"))
        do {
            _ = try slack.notifications[0].load()
            Issue.record("plain http to a remote host from a URL file was accepted")
        } catch {
            #expect(error.field == "notifications[1].urlFile" && error.problem.contains("plain http://") && !error.description.contains("SECRET"),
                    "\(error)")
        }
    }
}
