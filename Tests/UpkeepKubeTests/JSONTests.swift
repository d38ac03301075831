import Testing
import UpkeepKube

struct JSONTests {
    @Test func parsesAndSerializesRoundTrip() throws {
        let text = #"{"a":[1,2.5,-3,true,false,null],"b":{"c":"d\n\"é😀\u0001"},"big":9007199254740993}"#
        let value = try JSON.parse(text)
        #expect(value["big"] == .int(9_007_199_254_740_993))
        #expect(value["a"]?.array?[1] == .double(2.5))
        #expect(value[path: "b", "c"]?.string == "d\n\"é😀\u{01}")
        #expect(try JSON.parse(value.description) == value)
        #expect(try JSON.parse(#""\ud83d\ude00""#) == "😀")
    }

    @Test func refusesMalformedInputWithAnOffset() {
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "1 2", "{\"a\":\"\u{01}\"}"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
    }

    @Test func mergePatchFollowsRFC7386() throws {
        // Examples from RFC 7386 appendix A.
        let cases: [(String, String, String)] = [
            (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
            (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
            (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
            (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
            (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
            (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
            (#"{"e":null}"#, #"{"a":1}"#, #"{"a":1,"e":null}"#),
        ]
        for (target, patch, result) in cases {
            #expect(Patch.merge(try JSON.parse(target), try JSON.parse(patch)) == (try JSON.parse(result)))
        }
    }

    @Test func strategicMergeMergesListsByKeyAndHonoursDirectives() throws {
        let node = try JSON.parse(#"{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"DiskPressure","status":"False"}]},"metadata":{"finalizers":["a"]}}"#)
        let patched = try Patch.strategicMerge(node, try JSON.parse(
            #"{"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"DiskPressure","$patch":"delete"},{"type":"New","status":"True"}]},"metadata":{"finalizers":["b"],"$deleteFromPrimitiveList/finalizers":["a"]}}"#))
        #expect(patched[path: "status", "conditions"] == (try JSON.parse(#"[{"type":"Ready","status":"False"},{"type":"New","status":"True"}]"#)))
        #expect(patched[path: "metadata", "finalizers"] == ["b"])
        let replaced = try Patch.strategicMerge(node, try JSON.parse(#"{"status":{"$patch":"replace","x":1}}"#))
        #expect(replaced["status"] == ["x": 1])
    }

    @Test func jsonPatchOperations() throws {
        let doc = try JSON.parse(#"{"spec":{"taints":[{"key":"a"}]}}"#)
        let out = try Patch.jsonPatch(doc, try JSON.parse(#"[{"op":"add","path":"/spec/taints/-","value":{"key":"b"}},{"op":"replace","path":"/spec/taints/0/key","value":"c"},{"op":"test","path":"/spec/taints/1/key","value":"b"}]"#))
        #expect(out == (try JSON.parse(#"{"spec":{"taints":[{"key":"c"},{"key":"b"}]}}"#)))
        #expect(throws: PatchError.self) { try Patch.jsonPatch(doc, try JSON.parse(#"[{"op":"remove","path":"/nope"}]"#)) }
    }

    /// RFC 6901 escapes in a pointer: `~1` is `/`, `~0` is `~`, decoded in one pass (`~01` is `~1`).
    @Test func jsonPatchPointersUnescapeSlashAndTilde() throws {
        let doc = try JSON.parse(#"{"metadata":{"annotations":{"upkeep.io/a~b":"x","k~1":"y"}}}"#)
        let out = try Patch.jsonPatch(doc, try JSON.parse(#"[{"op":"replace","path":"/metadata/annotations/upkeep.io~1a~0b","value":"z"},{"op":"remove","path":"/metadata/annotations/k~01"}]"#))
        #expect(out == (try JSON.parse(#"{"metadata":{"annotations":{"upkeep.io/a~b":"z"}}}"#)))
    }

    @Test func selectorsParseAndMatchLikeKubernetes() throws {
        let selector = try LabelSelector.parse("app=web, tier!=db,env in (a,\tb),!legacy,track")
        #expect(selector.matches(["app": "web", "env": "a", "track": "x"]))
        #expect(!selector.matches(["app": "web", "env": "c", "track": "x"]))
        #expect(!selector.matches(["app": "web", "env": "a", "track": "x", "legacy": "1"]))
        #expect(!selector.matches(["app": "web", "env": "a", "track": "x", "tier": "db"]))
        #expect(throws: SelectorError.self) { try LabelSelector.parse("a in b") }
        let fields = try FieldSelector.parse("spec.nodeName=n1,status.phase!=Succeeded")
        #expect(fields.matches(["spec": ["nodeName": "n1"], "status": ["phase": "Running"]]))
        #expect(!fields.matches(["spec": ["nodeName": "n2"]]))
    }

    @Test func kubeTimeRoundTripsAndPrintsAges() {
        #expect(KubeTime.format(0) == "1970-01-01T00:00:00Z")
        #expect(KubeTime.format(1_709_251_199) == "2024-02-29T23:59:59Z")
        #expect(KubeTime.parse("2024-02-29T23:59:59Z") == 1_709_251_199)
        #expect(KubeTime.parse("2024-03-01T01:59:59+02:00") == 1_709_251_199)
        #expect(KubeTime.parse(KubeTime.formatMicro(1_709_251_199.25)) == 1_709_251_199.25)
        #expect(KubeTime.parse("yesterday") == nil)
        #expect([KubeTime.age(5), KubeTime.age(130), KubeTime.age(7200), KubeTime.age(3 * 86400)] == ["5s", "2m10s", "120m", "3d"])
    }
}
