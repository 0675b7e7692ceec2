// Errors as RFC 9457 problem details. Every error a client sees goes through `PlaneError`:
// a status, a stable type URI, a title and a detail written for the caller. Nothing else
// (library errors, stack traces, store paths) reaches a response; unexpected errors become
// a 500 whose detail is only the request id, and the cause is logged.
import Foundation
import Hummingbird
import Logging

/// A failure the plane reports to the client.
public enum PlaneError: Error, Sendable, CustomStringConvertible {
    case badRequest(String)
    case unauthorized(String)
    case forbidden(String)
    case operatorApprovalRequired(String)
    case notFound(String)
    case conflict(String)
    case payloadTooLarge(String)
    case unprocessable(String)
    case unsupportedMediaType(String)
    case methodNotAllowed(String)
    /// A bug or an unavailable dependency: the detail is logged, never sent.
    case internalError(String)
    case unavailable(String)

    public var status: HTTPResponse.Status {
        switch self {
        case .badRequest: return .badRequest
        case .unauthorized: return .unauthorized
        case .forbidden, .operatorApprovalRequired: return .forbidden
        case .notFound: return .notFound
        case .conflict: return .conflict
        case .payloadTooLarge: return .contentTooLarge
        case .unprocessable: return .unprocessableContent
        case .unsupportedMediaType: return .unsupportedMediaType
        case .methodNotAllowed: return .methodNotAllowed
        case .internalError: return .internalServerError
        case .unavailable: return .serviceUnavailable
        }
    }

    /// The problem type URI (a stable identifier; https://cce4long.dev/problems/…).
    public var type: String {
        let base = "https://cce4long.dev/problems/"
        switch self {
        case .badRequest: return base + "bad-request"
        case .unauthorized: return base + "unauthorized"
        case .forbidden: return base + "forbidden"
        case .operatorApprovalRequired: return base + "operator-approval-required"
        case .notFound: return base + "not-found"
        case .conflict: return base + "conflict"
        case .payloadTooLarge: return base + "payload-too-large"
        case .unprocessable: return base + "unprocessable"
        case .unsupportedMediaType: return base + "unsupported-media-type"
        case .methodNotAllowed: return base + "method-not-allowed"
        case .internalError: return base + "internal"
        case .unavailable: return base + "unavailable"
        }
    }

    public var detail: String {
        switch self {
        case .badRequest(let d), .unauthorized(let d), .forbidden(let d), .operatorApprovalRequired(let d), .notFound(let d),
             .conflict(let d), .payloadTooLarge(let d), .unprocessable(let d), .unsupportedMediaType(let d), .methodNotAllowed(let d),
             .internalError(let d), .unavailable(let d):
            return d
        }
    }

    public var description: String { "\(status.code) \(detail)" }
}

/// The JSON body of a problem response.
struct ProblemBody: Encodable {
    let type: String
    let title: String
    let status: Int
    let detail: String
    let instance: String?
}

enum Problem {
    static let contentType = "application/problem+json"

    static func response(_ e: PlaneError, requestID: String, path: String) -> Response {
        let exposed = e.status.code >= 500 ? "internal error; quote request id \(requestID) to the operator" : e.detail
        let body = ProblemBody(type: e.type, title: e.status.reasonPhrase, status: e.status.code, detail: exposed, instance: path)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? enc.encode(body)) ?? Data("{}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = contentType
        if case .unauthorized = e { headers[.wwwAuthenticate] = "Bearer realm=\"cce4-plane\"" }
        return Response(status: e.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Maps any error to what the client may see.
    static func classify(_ error: any Error) -> PlaneError {
        switch error {
        case let e as PlaneError: return e
        case let e as HTTPError:
            switch e.status {
            case .notFound: return .notFound("no such resource")
            case .methodNotAllowed: return .methodNotAllowed("method not allowed on this resource")
            case .contentTooLarge: return .payloadTooLarge("request body too large")
            case .badRequest: return .badRequest(e.body ?? "bad request")
            case .unsupportedMediaType: return .unsupportedMediaType("unsupported content type")
            default:
                if e.status.code < 500 { return .badRequest(e.body ?? e.status.reasonPhrase) }
                return .internalError("\(e)")
            }
        default: return .internalError(String(describing: type(of: error)))
        }
    }
}
