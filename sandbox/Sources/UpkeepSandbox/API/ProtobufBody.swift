import Foundation
import UpkeepKube

/// Request bodies in Kubernetes' protobuf encoding, for the kinds the sandbox reads that way.
///
/// kubectl from v1.32 sends the objects its `create` generators make (`kubectl create configmap`,
/// `create namespace`) as `application/vnd.kubernetes.protobuf`, and does not fall back to JSON
/// on a 415. The encoding (https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding):
/// the 4 bytes `k8s\0`, then a `runtime.Unknown` message (1: typeMeta {1: apiVersion, 2: kind},
/// 2: raw, the object's own message; 3: contentEncoding, 4: contentType). The objects' messages
/// are those of k8s.io/api's `generated.proto`; only ConfigMap and Namespace are read here (with
/// the ObjectMeta fields a client sets), which covers what kubectl's generators make of the kinds
/// the sandbox serves; any other kind is refused with 415, naming `kubectl apply -f`, which sends JSON.
enum ProtobufBody {
    static let mediaType = "application/vnd.kubernetes.protobuf"
    static let magic: [UInt8] = [0x6b, 0x38, 0x73, 0x00]

    struct Refusal: Error, Equatable {
        var message: String
    }

    /// The object in `body` as the JSON the API stores.
    static func decode(_ body: [UInt8]) throws(Refusal) -> JSON {
        guard body.count >= magic.count, Array(body.prefix(magic.count)) == magic else {
            throw Refusal(message: "the protobuf body does not begin with the k8s\\0 prefix")
        }
        let unknown = try fields(body[magic.count...])
        guard let typeMeta = unknown.bytes(1), let raw = unknown.bytes(2) else {
            throw Refusal(message: "the protobuf body carries no typeMeta or no object")
        }
        let type = try fields(typeMeta)
        let apiVersion = type.string(1) ?? ""
        let kind = type.string(2) ?? ""
        let object = try fields(raw)
        var json: JSON = ["apiVersion": .string(apiVersion), "kind": .string(kind)]
        switch (apiVersion, kind) {
        case ("v1", "ConfigMap"):
            json["metadata"] = try metadata(object)
            let data = try object.map(2)
            if !data.isEmpty { json["data"] = .object(data.mapValues { .string(String(decoding: $0, as: UTF8.self)) }) }
            let binary = try object.map(3)
            if !binary.isEmpty { json["binaryData"] = .object(binary.mapValues { .string(Data($0).base64EncodedString()) }) }
            if let immutable = object.varint(4) { json["immutable"] = .bool(immutable != 0) }
        case ("v1", "Namespace"):
            json["metadata"] = try metadata(object)
            if let spec = object.bytes(2) {
                let finalizers = try fields(spec).strings(1)
                if !finalizers.isEmpty { json["spec"] = ["finalizers": .array(finalizers.map(JSON.string))] }
            }
        default:
            throw Refusal(message: "the sandbox's API reads protobuf bodies of v1 ConfigMap and Namespace only, not \(apiVersion) \(kind); "
                          + "send it as JSON or YAML (kubectl apply -f FILE)")
        }
        return json
    }

    /// ObjectMeta (field 1 of the object): what a client may set on a new object.
    private static func metadata(_ object: Fields) throws(Refusal) -> JSON {
        guard let bytes = object.bytes(1) else { return [:] }
        let meta = try fields(bytes)
        var json: JSON = [:]
        for (number, key) in [(1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")] {
            if let value = meta.string(number), !value.isEmpty { json[key] = .string(value) }
        }
        for (number, key) in [(11, "labels"), (12, "annotations")] {
            let map = try meta.map(number)
            if !map.isEmpty { json[key] = .object(map.mapValues { .string(String(decoding: $0, as: UTF8.self)) }) }
        }
        let finalizers = meta.strings(14)
        if !finalizers.isEmpty { json["finalizers"] = .array(finalizers.map(JSON.string)) }
        return json
    }

    // MARK: - Wire format (https://protobuf.dev/programming-guides/encoding/)

    /// A message's fields: number → the values of varint fields and of length-delimited ones, in order.
    struct Fields {
        var varints: [Int: [UInt64]] = [:]
        var delimited: [Int: [ArraySlice<UInt8>]] = [:]

        func bytes(_ number: Int) -> ArraySlice<UInt8>? { delimited[number]?.last }
        func string(_ number: Int) -> String? { bytes(number).map { String(decoding: $0, as: UTF8.self) } }
        func strings(_ number: Int) -> [String] { (delimited[number] ?? []).map { String(decoding: $0, as: UTF8.self) } }
        func varint(_ number: Int) -> UInt64? { varints[number]?.last }

        /// A `map<string, string|bytes>`: repeated entries {1: key, 2: value}.
        func map(_ number: Int) throws(Refusal) -> [String: ArraySlice<UInt8>] {
            var map: [String: ArraySlice<UInt8>] = [:]
            for entry in delimited[number] ?? [] {
                let fields = try ProtobufBody.fields(entry)
                map[fields.string(1) ?? ""] = fields.bytes(2) ?? []
            }
            return map
        }
    }

    /// Nesting is bounded by the callers (three levels at most); each length is checked against
    /// what is left, so a damaged body is refused and never read past.
    static func fields(_ bytes: ArraySlice<UInt8>) throws(Refusal) -> Fields {
        var fields = Fields()
        var index = bytes.startIndex
        func varint() throws(Refusal) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard index < bytes.endIndex else { throw Refusal(message: "the protobuf body ends inside a varint") }
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7f) << UInt64(shift)
                if byte & 0x80 == 0 { return value }
            }
            throw Refusal(message: "the protobuf body has a varint longer than 10 bytes")
        }
        while index < bytes.endIndex {
            let key = try varint()
            let number = Int(key >> 3)
            switch key & 7 {
            case 0:
                fields.varints[number, default: []].append(try varint())
            case 1, 5:
                let width = key & 7 == 1 ? 8 : 4
                guard bytes.endIndex - index >= width else { throw Refusal(message: "the protobuf body ends inside a fixed-width field") }
                index += width
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.endIndex - index) else {
                    throw Refusal(message: "the protobuf body's field \(number) claims \(length) bytes; \(bytes.endIndex - index) are left")
                }
                fields.delimited[number, default: []].append(bytes[index..<(index + Int(length))])
                index += Int(length)
            default:
                throw Refusal(message: "the protobuf body has a field of wire type \(key & 7), which Kubernetes' messages do not use")
            }
        }
        return fields
    }
}
