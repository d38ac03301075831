import UpkeepHTTPServer
import UpkeepKube

/// The etcd v3 JSON gateway's routes over the fake kine, as a single SQLite server's fake k3s
/// serves them on `<address>:2379` (https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/):
/// `POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/deleterange`, `/v3/kv/txn` and
/// `/v3/maintenance/status`. Cluster membership is etcd's alone: those routes answer as a
/// gateway without that service does (gRPC Unimplemented). Errors have the gateway's shape.
public enum GatewayService {
    public static func respond(_ request: APIRequest, kine: KineStore) -> APIResponse {
        guard request.method == "POST" else { return error("Method Not Allowed", code: 12, status: 405) }
        let body: JSON
        do {
            body = request.body.isEmpty ? [:] : try JSON.parse(bytes: request.body)
        } catch {
            return self.error("invalid JSON: \(error)", code: 3, status: 400)
        }
        do {
            switch request.path {
            case "/v3/kv/range":
                return .json(try kine.range(try Gateway.RangeRequest(json: body)).json)
            case "/v3/kv/put":
                let header = try kine.put(try Gateway.text(body["key"]), try Gateway.bytes(body["value"]))
                return .json(["header": header.json])
            case "/v3/kv/deleterange":
                let end = body["range_end"] == nil ? nil : try Gateway.text(body["range_end"])
                let (deleted, header) = try kine.deleteRange(try Gateway.text(body["key"]), rangeEnd: end)
                return .json(deleted == 0 ? ["header": header.json] : ["header": header.json, "deleted": Gateway.number(deleted)])
            case "/v3/kv/txn":
                return .json(try kine.txn(try Gateway.TxnRequest(json: body)).json)
            case "/v3/maintenance/status":
                return .json(["header": Gateway.Header(revision: try kine.revision).json, "version": "3.5.13"])
            case let path where path.hasPrefix("/v3/cluster/"):
                return error("unknown service etcdserverpb.Cluster", code: 12, status: 501)
            default:
                return error("Not Found", code: 5, status: 404)
            }
        } catch let failure as GatewayDecodingError {
            return error(failure.message, code: 3, status: 400)
        } catch {
            return self.error("\(error)", code: 13, status: 500)
        }
    }

    static func error(_ message: String, code: Int64, status: Int) -> APIResponse {
        .json(Gateway.ErrorBody(message: message, code: code).json, status: status)
    }
}
