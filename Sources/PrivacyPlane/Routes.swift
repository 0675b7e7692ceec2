// The routes of docs/openapi.json (the HTTP API contract in docs/plane.md).
import Dataset
import Envelope
import Foundation
import Hummingbird
import Ledger
import NIOCore
import Wallet

enum Routes {
    static func json<T: Encodable>(_ v: T, _ status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? enc.encode(v)) ?? Data("{}".utf8)
        var h = HTTPFields(); h[.contentType] = contentType
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ s: String, contentType: String) -> Response {
        var h = HTTPFields(); h[.contentType] = contentType
        return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    /// Reads a JSON body of at most `limit` bytes: not JSON → 400, wrong shape → 422.
    static func body<T: Decodable>(_ req: Request, _ t: T.Type, limit: Int) async throws -> T {
        if let ct = req.headers[.contentType], !ct.lowercased().hasPrefix("application/json") {
            throw PlaneError.unsupportedMediaType("send the body as application/json")
        }
        var r = req
        let buf: ByteBuffer
        do { buf = try await r.collectBody(upTo: limit) } catch is NIOTooManyBytesError {
            throw PlaneError.payloadTooLarge("JSON bodies are limited to \(limit) bytes")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw PlaneError.payloadTooLarge("JSON bodies are limited to \(limit) bytes")
        }
        let data = Data(buffer: buf)
        guard (try? JSONSerialization.jsonObject(with: data)) != nil else { throw PlaneError.badRequest("the body is not valid JSON") }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.keyNotFound(k, _) {
            throw PlaneError.unprocessable("the body lacks '\(k.stringValue)'")
        } catch let DecodingError.typeMismatch(_, c) {
            throw PlaneError.unprocessable("'\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, c) {
            throw PlaneError.unprocessable("'\(c.codingPath.map(\.stringValue).joined(separator: "."))' is missing")
        } catch {
            throw PlaneError.unprocessable("the body does not have the expected fields")
        }
    }

    static func bearer(_ req: Request, _ service: PlaneService) throws -> Address {
        guard let h = req.headers[.authorization] else { throw PlaneError.unauthorized("sign in first: send Authorization: Bearer TOKEN (POST /v1/auth/login)") }
        guard h.hasPrefix("Bearer ") else { throw PlaneError.unauthorized("the Authorization header must be 'Bearer TOKEN'") }
        return try service.authenticator.verifyToken(String(h.dropFirst(7)), now: PlaneService.now())
    }

    static func address(_ s: String, _ what: String) throws -> Address {
        do { return try Address(s) } catch { throw PlaneError.unprocessable("\(what) is not an Ethereum address (0x and 40 hex digits)") }
    }

    struct CreateBody: Decodable {
        let id: String
        let policyHash: String?
        enum CodingKeys: String, CodingKey { case id, policyHash }
        init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            // Absent means "no policy"; an explicit null is a mistake, not a default.
            if c.contains(.policyHash) { policyHash = try c.decode(String.self, forKey: .policyHash) } else { policyHash = nil }
        }
    }
    struct LoginBody: Decodable { let message: String; let signature: String }
    struct RentalBody: Decodable { let user: String; let expires: UInt64 }
    struct ApprovalBody: Decodable { let expires: UInt64; let nonce: UInt64; let signature: String }

    static func register(on: (HTTPRequest.Method, String, @escaping Handler) -> Void, service: PlaneService, metrics: PlaneMetrics) {
        let limit = service.config.maxJSONBody

        on(.get, "/healthz") { _, _ in json(["status": "ok"]) }
        on(.get, "/metrics") { _, _ in text(metrics.registry.emitToString(), contentType: "text/plain; version=0.0.4; charset=utf-8") }
        on(.get, "/openapi.json") { _, _ in text(OpenAPI.document, contentType: "application/json") }

        // Sign-in
        on(.get, "/v1/auth/nonce") { _, _ in json(try service.authenticator.issueNonce(now: PlaneService.now())) }
        on(.post, "/v1/auth/login") { req, _ in
            let b = try await body(req, LoginBody.self, limit: limit)
            let auth = service.authenticator
            return json(try await blocking { try auth.login(message: b.message, signature: b.signature, now: PlaneService.now()) })
        }

        on(.get, "/v1/auth/operator-approval") { req, _ in
            let caller = try bearer(req, service)
            var expires: UInt64?
            if let e = req.uri.queryParameters["expires"] {
                guard let v = UInt64(e) else { throw PlaneError.unprocessable("expires must be Unix seconds") }
                expires = v
            }
            let until = expires
            let body = try await blocking { try service.approvalRequest(caller: caller, expires: until) }
            return text(body, contentType: "application/json")
        }
        on(.post, "/v1/auth/operator-approval") { req, _ in
            let caller = try bearer(req, service)
            let b = try await body(req, ApprovalBody.self, limit: limit)
            let sig: Signature
            do { sig = try Signature(hex: b.signature) } catch { throw PlaneError.unprocessable("signature is not 65 bytes of 0x-hex") }
            try await blocking { try service.approveOperator(caller: caller, expires: b.expires, nonce: b.nonce, signature: sig) }
            return Response(status: .noContent)
        }

        // Datasets
        on(.post, "/v1/datasets") { req, _ in
            let caller = try bearer(req, service)
            let b = try await body(req, CreateBody.self, limit: limit)
            return json(try await blocking { try service.createDataset(caller: caller, id: b.id, policyHash: b.policyHash) }, .created)
        }
        on(.get, "/v1/datasets/{id}") { _, ctx in
            let id = try ctx.parameters.require("id")
            return json(try await blocking { try service.dataset(id) })
        }
        on(.get, "/v1/datasets/{id}/versions") { _, ctx in
            let id = try ctx.parameters.require("id")
            return json(["versions": try await blocking { try service.versions(id) }])
        }
        on(.put, "/v1/datasets/{id}/versions") { req, ctx in
            let caller = try bearer(req, service)
            let id = try ctx.parameters.require("id")
            return json(try await Upload.handle(req, id: id, caller: caller, service: service), .created)
        }
        on(.post, "/v1/datasets/{id}/keys") { req, ctx in
            let caller = try bearer(req, service)
            let id = try ctx.parameters.require("id")
            return json(["key": try await blocking { try service.rotate(caller: caller, id: id) }], .created)
        }
        on(.delete, "/v1/datasets/{id}/versions/{root}") { req, ctx in
            let caller = try bearer(req, service)
            let id = try ctx.parameters.require("id"), root = try ctx.parameters.require("root")
            try await blocking { try service.deleteVersion(caller: caller, id: id, root: root) }
            return Response(status: .noContent)
        }

        // Rentals
        on(.post, "/v1/datasets/{id}/rentals") { req, ctx in
            let caller = try bearer(req, service)
            let id = try ctx.parameters.require("id")
            let b = try await body(req, RentalBody.self, limit: limit)
            let user = try address(b.user, "user")
            return json(try await blocking { try service.grantRental(caller: caller, id: id, user: user, expires: b.expires) }, .created)
        }
        on(.delete, "/v1/datasets/{id}/rentals/{rental}") { req, ctx in
            let caller = try bearer(req, service)
            let id = try ctx.parameters.require("id")
            guard let rid = UInt64(try ctx.parameters.require("rental")), rid > 0 else { throw PlaneError.unprocessable("the rental id is a positive number") }
            try await blocking { try service.endRental(caller: caller, id: id, rentalID: rid) }
            return Response(status: .noContent)
        }
        on(.get, "/v1/datasets/{id}/rentals/{rental}") { _, ctx in
            let id = try ctx.parameters.require("id")
            let user = try address(try ctx.parameters.require("rental"), "the address")
            return json(try await blocking { try service.rentalStatus(id: id, user: user) })
        }

        // Audit
        on(.get, "/v1/audit") { req, _ in
            guard let d = req.uri.queryParameters["dataset"], !d.isEmpty else { throw PlaneError.badRequest("give ?dataset=ID") }
            let id = String(d)
            return json(try await blocking { try service.auditTrail(dataset: id) })
        }
    }
}

/// `PUT /v1/datasets/{id}/versions`: the body streams through a bounded pipe into the packer.
enum Upload {
    static func handle(_ req: Request, id: String, caller: Address, service: PlaneService) async throws -> VersionInfo {
        if let ct = req.headers[.contentType], !(ct.hasPrefix("application/x-tar") || ct.hasPrefix("application/octet-stream")) {
            throw PlaneError.unsupportedMediaType("send the version as application/x-tar")
        }
        let limit = service.config.maxUploadBytes
        if let len = req.headers[.contentLength].flatMap({ Int64($0) }), len > limit {
            throw PlaneError.payloadTooLarge("uploads are limited to \(limit) bytes; this one is \(len)")
        }
        // Fail fast (before reading a byte) when the caller may not upload.
        try await blocking { _ = try service.requireOwner(id, caller, approval: true) }
        let pipe = BodyPipe()
        let config = service.config
        let packing = Task {
            try await blocking {
                defer { pipe.close() }
                return try service.upload(caller: caller, id: id) { packer in try TarBridge.pack(packer, source: pipe, config: config) }
            }
        }
        var total: Int64 = 0
        var producerError: PlaneError?
        do {
            for try await buf in req.body {
                total += Int64(buf.readableBytes)
                if total > limit {
                    producerError = .payloadTooLarge("uploads are limited to \(limit) bytes")
                    break
                }
                if !(await pipe.push(Array(buffer: buf))) { break }
            }
        } catch {
            producerError = .badRequest("the upload body was cut off")
        }
        pipe.finish(producerError)
        do { return try await packing.value } catch {
            if let producerError { throw producerError }
            throw error
        }
    }
}
