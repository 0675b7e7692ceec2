// The Privacy Plane's HTTP client: sign-in (EIP-4361), operator approval (EIP-712),
// datasets, streamed version pushes, rentals and the audit log. docs/plane-client.md.
import CurlHTTP
import Dataset
import Envelope
import Foundation
import Ledger
import Wallet

/// A failure talking to the plane, as one line: the plane's problem title and detail
/// (RFC 9457), the HTTP status and problem type, or the transport's message.
public struct PlaneClientError: Error, CustomStringConvertible, Sendable {
    /// The HTTP status; nil for transport failures and malformed answers.
    public let status: Int?
    /// The problem type URI (e.g. `PlaneClient.approvalRequired`), if the plane sent one.
    public let type: String?
    public let message: String

    public init(status: Int?, type: String?, message: String) { self.status = status; self.type = type; self.message = message }

    public var description: String { message }

    /// Whether the plane refused because the owner has not approved it as an operator.
    public var needsOperatorApproval: Bool { type == PlaneClient.approvalRequired }

    /// The one-line error for a non-2xx response: problem+json when the body is one, else
    /// the status and the start of the body (control characters removed).
    public static func from(response r: HTTPResponse, doing what: String) -> PlaneClientError {
        let ctype = r.headers["content-type"] ?? ""
        if ctype.contains("json"), let o = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] {
            let type = o["type"] as? String
            let title = (o["title"] as? String).map(clean) ?? ""
            let detail = (o["detail"] as? String).map(clean) ?? ""
            var text = "the plane refused to \(what): " + [title, detail].filter { !$0.isEmpty }.joined(separator: ": ")
            if title.isEmpty && detail.isEmpty { text += "HTTP \(r.status)" }
            var tail = ["HTTP \(r.status)"]
            if let t = type, t != "about:blank" { tail.append(t) }
            text += " (" + tail.joined(separator: ", ") + ")"
            if type == PlaneClient.approvalRequired {
                text += "; approve the plane as your operator first (cce4 plane approve, or --approve)"
            }
            return PlaneClientError(status: r.status, type: type, message: text)
        }
        let snippet = clean(String(decoding: r.body.prefix(200), as: UTF8.self))
        return PlaneClientError(status: r.status, type: nil, message: "the plane refused to \(what): HTTP \(r.status)" + (snippet.isEmpty ? "" : ": " + snippet))
    }

    static func clean(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : $0 }))
            .trimmingCharacters(in: .whitespaces)
    }
}

/// A client of one Privacy Plane (`baseURL`, e.g. `http://127.0.0.1:8443`). Holds a bearer
/// token once signed in. Requests go through `CurlClient` (pooled, retried except for
/// streamed bodies).
public final class PlaneClient: @unchecked Sendable {
    /// Problem type of a 403 for a call that needs the owner's operator approval.
    public static let approvalRequired = "https://cce4long.dev/problems/operator-approval-required"

    public let baseURL: String
    let http: CurlClient
    private let lock = NSLock()
    private var _token: String?

    /// The bearer token (after `signIn`, or given).
    public var token: String? {
        get { lock.withLock { _token } }
        set { lock.withLock { _token = newValue } }
    }

    public init(baseURL: String, token: String? = nil, options: HTTPClientOptions = PlaneClient.defaultOptions) throws {
        var b = baseURL
        while b.hasSuffix("/") { b.removeLast() }
        guard let u = URLComponents(string: b), let scheme = u.scheme, scheme == "http" || scheme == "https", u.host?.isEmpty == false,
              u.query == nil, u.fragment == nil, u.user == nil, u.password == nil else {
            // The input is not echoed: it may carry a password.
            throw PlaneClientError(status: nil, type: nil, message: "the plane URL must be http(s)://HOST[:PORT][/PATH], with no user:password@, query or fragment")
        }
        self.baseURL = b
        self._token = token
        self.http = CurlClient(options: options)
    }

    public static var defaultOptions: HTTPClientOptions {
        var o = HTTPClientOptions()
        o.maxAttempts = 3
        o.retryTime = 10
        o.maxResponseBytes = 16 << 20
        // The plane answers a push only after sealing the directories and recording the
        // version on the ledger: allow that long a silence after the last byte.
        o.stallTimeout = 120
        return o
    }

    /// The URL's authority (host[:port]): what a sign-in message's domain must be.
    public var authority: String {
        guard let u = URLComponents(string: baseURL), let h = u.host else { return "" }
        let host = h.contains(":") && !h.hasPrefix("[") ? "[\(h)]" : h
        return u.port.map { "\(host):\($0)" } ?? host
    }

    // MARK: requests

    /// The request for an API call, bearer token included when there is one.
    public func request(_ method: String, _ path: String, json: [String: Any]? = nil) throws -> (HTTPRequest, [UInt8]) {
        var headers = [("Accept", "application/json, application/problem+json")]
        if let t = token { headers.append(("Authorization", "Bearer \(t)")) }
        var body = [UInt8]()
        if let json {
            body = Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]))
            headers.append(("Content-Type", "application/json"))
        }
        return (HTTPRequest(method: method, url: baseURL + path, headers: headers), body)
    }

    /// Sends a request; returns the body of a 2xx answer, throws `PlaneClientError` otherwise.
    func call(_ method: String, _ path: String, json: [String: Any]? = nil, doing what: String, expect: Set<Int> = [200, 201, 204]) throws -> [UInt8] {
        var (req, body) = try request(method, path, json: json)
        let resp: HTTPResponse
        do {
            resp = try body.withUnsafeBytes { (b) throws -> HTTPResponse in
                if json != nil { req.body = .bytes(b) }
                return try http.perform(req)
            }
        } catch let e as TransportError {
            throw PlaneClientError(status: nil, type: nil, message: "cannot \(what) at \(baseURL): \(e.message)")
        }
        guard expect.contains(resp.status) else { throw PlaneClientError.from(response: resp, doing: what) }
        return resp.body
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8], doing what: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(body)) } catch {
            throw PlaneClientError(status: nil, type: nil, message: "the plane's answer to \(what) is not what the API specifies: \(Self.decodingProblem(error))")
        }
    }

    static func decodingProblem(_ e: any Error) -> String {
        switch e {
        case DecodingError.keyNotFound(let k, _): return "missing field '\(k.stringValue)'"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case DecodingError.dataCorrupted(let c) where !c.codingPath.isEmpty:
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' has an invalid value"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(e)"
        }
    }

    static func checkDataset(_ id: String) throws {
        do { try AssociatedData.validateDatasetID(id) } catch { throw PlaneClientError(status: nil, type: nil, message: "\(error)") }
    }

    // MARK: sign-in

    /// `GET /v1/auth/nonce`.
    public func signInNonce() throws -> SignInNonce {
        try decode(SignInNonce.self, try call("GET", "/v1/auth/nonce", doing: "issue a sign-in nonce"), doing: "the nonce request")
    }

    /// The EIP-4361 message for `nonce`, issued at `now` (Unix seconds), expiring with the nonce.
    public static func signInMessage(nonce n: SignInNonce, address: Address, now: Int64) throws -> SIWEMessage {
        let m = SIWEMessage(domain: n.domain, address: address, statement: n.statement, uri: n.uri, chainID: n.chainId, nonce: n.nonce,
                            issuedAt: SIWETime(unixSeconds: now), expirationTime: n.expiresAt > now ? SIWETime(unixSeconds: n.expiresAt) : nil)
        // What the plane will parse: refuse to sign anything that does not round-trip.
        do {
            let parsed = try SIWEMessage(parsing: m.text)
            guard parsed == m else { throw PlaneClientError(status: nil, type: nil, message: "the sign-in message does not round-trip") }
        } catch let e as PlaneClientError { throw e } catch {
            throw PlaneClientError(status: nil, type: nil, message: "the plane's nonce does not make a valid EIP-4361 message: \(error)")
        }
        return m
    }

    /// Refuses a nonce whose domain is not the one the user meant to sign in to.
    public static func checkSignInDomain(_ n: SignInNonce, expected: String) throws {
        guard n.domain == expected else {
            throw PlaneClientError(status: nil, type: nil, message: "the plane asks to sign in for '\(PlaneClientError.clean(n.domain))', but you connected to '\(expected)'; refusing to sign (pass --siwe-domain if the plane is behind a proxy with that name)")
        }
    }

    /// Signs in: GET nonce → EIP-4361 message → personal_sign → POST login. Refuses to sign
    /// a message for another domain than `expectedDomain` (default: this URL's authority),
    /// so a plane cannot collect a sign-in meant for another site.
    @discardableResult
    public func signIn(wallet: PrivateKey, expectedDomain: String? = nil, now: Int64 = Int64(Date().timeIntervalSince1970)) throws -> Session {
        let n = try signInNonce()
        try Self.checkSignInDomain(n, expected: expectedDomain ?? authority)
        let m = try Self.signInMessage(nonce: n, address: wallet.address, now: now)
        let sig = try wallet.signPersonal(Array(m.text.utf8))
        let s = try decode(Session.self, try call("POST", "/v1/auth/login", json: ["message": m.text, "signature": sig.hex], doing: "sign in"), doing: "the login")
        token = s.token
        return s
    }

    // MARK: operator approval

    /// `GET /v1/auth/operator-approval`, parsed and checked.
    public func operatorApprovalRequest() throws -> ApprovalRequest {
        try Self.parseApproval(try call("GET", "/v1/auth/operator-approval", doing: "describe the operator approval"))
    }

    /// Parses the eth_signTypedData_v4 JSON the plane sends. The types must be exactly the
    /// ledger's `EIP712Domain` and `OperatorApproval`: the client signs its own digest of
    /// the values, never a type the server made up.
    public static func parseApproval(_ body: [UInt8]) throws -> ApprovalRequest {
        func bad(_ m: String) -> PlaneClientError { PlaneClientError(status: nil, type: nil, message: "the plane's operator approval request is invalid: \(m)") }
        guard let o = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { throw bad("not a JSON object") }
        guard o["primaryType"] as? String == "OperatorApproval" else { throw bad("primaryType is not OperatorApproval") }
        guard let types = o["types"] as? [String: Any] else { throw bad("no types") }
        func fields(_ t: String) -> [String]? {
            (types[t] as? [[String: Any]])?.map { "\($0["type"] as? String ?? "?") \($0["name"] as? String ?? "?")" }
        }
        guard fields("OperatorApproval") == ["address owner", "address operator", "uint64 expires", "uint64 nonce"] else {
            throw bad("OperatorApproval is not (address owner,address operator,uint64 expires,uint64 nonce)")
        }
        guard fields("EIP712Domain") == ["string name", "string version", "uint256 chainId", "address verifyingContract", "bytes32 salt"] else {
            throw bad("EIP712Domain is not (string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)")
        }
        guard let d = o["domain"] as? [String: Any], let m = o["message"] as? [String: Any] else { throw bad("no domain or message") }
        func uint(_ v: Any?, _ name: String) throws -> UInt64 {
            if let s = v as? String {
                if s.hasPrefix("0x"), let x = UInt64(s.dropFirst(2), radix: 16) { return x }
                if let x = UInt64(s) { return x }
            } else if let n = v as? NSNumber, let x = UInt64(n.stringValue) {  // true/false: "true", refused
                return x
            }
            throw bad("\(name) is not an unsigned integer")
        }
        func address(_ v: Any?, _ name: String) throws -> Address {
            guard let s = v as? String, let a = try? Address(s) else { throw bad("\(name) is not an address") }
            return a
        }
        guard let name = d["name"] as? String, let version = d["version"] as? String else { throw bad("domain name or version missing") }
        guard let saltHex = d["salt"] as? String, saltHex.hasPrefix("0x"), let salt = Hex.decode(String(saltHex.dropFirst(2))), salt.count == 32 else {
            throw bad("domain salt is not 0x + 64 hex digits")
        }
        let domain: EIP712Domain
        do {
            domain = try EIP712Domain(name: name, version: version, chainId: try uint(d["chainId"], "chainId"),
                                      verifyingContract: try address(d["verifyingContract"], "verifyingContract"), salt: salt)
        } catch let e as PlaneClientError { throw e } catch { throw bad("\(error)") }
        return ApprovalRequest(domain: domain, owner: try address(m["owner"], "owner"), operator: try address(m["operator"], "operator"),
                               expires: try uint(m["expires"], "expires"), nonce: try uint(m["nonce"], "nonce"))
    }

    /// The JSON body of `POST /v1/auth/operator-approval` for a signed request.
    public static func approvalBody(_ r: ApprovalRequest, signature: Signature) -> [String: Any] {
        ["expires": r.expires, "nonce": r.nonce, "signature": signature.hex]
    }

    /// Approves the plane as the signed-in owner's operator: fetches the typed data, checks
    /// it is for this wallet (and for `expectedOperator`, when given), signs its EIP-712
    /// digest with the wallet's key and posts the signature. Returns what was signed.
    @discardableResult
    public func approveOperator(wallet: PrivateKey, expectedOperator: Address? = nil) throws -> ApprovalRequest {
        let r = try operatorApprovalRequest()
        guard r.owner == wallet.address else {
            throw PlaneClientError(status: nil, type: nil, message: "the plane asks \(wallet.address) to sign an approval for owner \(r.owner); refusing")
        }
        if let want = expectedOperator, want != r.operator {
            throw PlaneClientError(status: nil, type: nil, message: "the plane asks to approve operator \(r.operator), not \(want); refusing")
        }
        let sig = try wallet.sign(hash: r.digest)
        _ = try call("POST", "/v1/auth/operator-approval", json: Self.approvalBody(r, signature: sig), doing: "record the operator approval")
        return r
    }

    // MARK: datasets

    /// `POST /v1/datasets`.
    public func createDataset(id: String, policyHash: String? = nil) throws -> DatasetInfo {
        try Self.checkDataset(id)
        var body: [String: Any] = ["id": id]
        if let p = policyHash { body["policyHash"] = p }
        return try decode(DatasetInfo.self, try call("POST", "/v1/datasets", json: body, doing: "create dataset \(id)"), doing: "the dataset creation")
    }

    /// `GET /v1/datasets/{id}`.
    public func dataset(id: String) throws -> DatasetInfo {
        try Self.checkDataset(id)
        return try decode(DatasetInfo.self, try call("GET", "/v1/datasets/\(id)", doing: "describe dataset \(id)"), doing: "the dataset request")
    }

    /// `PUT /v1/datasets/{id}/versions` with a tar body streamed from `tar` (`length` bytes
    /// when known, else chunked); `progress` gets the bytes sent so far. Never retried.
    public func pushVersion(id: String, tar: any ByteSource, length: Int64?, progress: ((Int64) -> Void)? = nil) throws -> VersionInfo {
        try Self.checkDataset(id)
        var (req, _) = try request("PUT", "/v1/datasets/\(id)/versions")
        req.headers.append(("Content-Type", "application/x-tar"))
        var sent: Int64 = 0
        req.body = .stream(length: length, read: { buf in
            let n = try tar.read(into: buf)
            sent += Int64(n)
            progress?(sent)
            return n
        })
        let resp: HTTPResponse
        do throws(TransportError) { resp = try http.perform(req) } catch {
            throw PlaneClientError(status: nil, type: nil, message: "cannot push a version of \(id) to \(baseURL): \(error.message)")
        }
        guard resp.status == 201 || resp.status == 200 else { throw PlaneClientError.from(response: resp, doing: "store a version of \(id)") }
        return try decode(VersionInfo.self, resp.body, doing: "the push")
    }

    /// Pushes a directory: streams it as a tar (`TarWriter`) with its exact length.
    public func pushVersion(id: String, directory: String, progress: ((_ sent: Int64, _ total: Int64) -> Void)? = nil) throws -> VersionInfo {
        let w = try TarWriter(directory: directory)
        let total = w.archiveSize
        return try pushVersion(id: id, tar: w, length: total, progress: progress.map { p in { p($0, total) } })
    }

    /// `GET /v1/datasets/{id}/versions`.
    public func versions(id: String) throws -> [VersionInfo] {
        try Self.checkDataset(id)
        struct Answer: Decodable { let versions: [VersionInfo] }
        return try decode(Answer.self, try call("GET", "/v1/datasets/\(id)/versions", doing: "list the versions of \(id)"), doing: "the version list").versions
    }

    /// `DELETE /v1/datasets/{id}/versions/{root}`.
    public func deleteVersion(id: String, root: String) throws {
        try Self.checkDataset(id)
        guard (try? SHA256Digest(hex: root)) != nil else { throw PlaneClientError(status: nil, type: nil, message: "a version root is 64 hex digits") }
        _ = try call("DELETE", "/v1/datasets/\(id)/versions/\(root.lowercased())", doing: "delete version \(root.prefix(16))… of \(id)")
    }

    // MARK: rentals and audit

    /// `POST /v1/datasets/{id}/rentals`.
    public func createRental(id: String, user: Address, expires: Int64) throws -> Rental {
        try Self.checkDataset(id)
        return try decode(Rental.self, try call("POST", "/v1/datasets/\(id)/rentals", json: ["user": user.checksummed, "expires": expires],
                                                doing: "rent \(id) to \(user)"), doing: "the rental")
    }

    /// `DELETE /v1/datasets/{id}/rentals/{rentalId}`.
    public func endRental(id: String, rentalId: String) throws {
        try Self.checkDataset(id)
        guard !rentalId.isEmpty, rentalId.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw PlaneClientError(status: nil, type: nil, message: "a rental id is letters, digits, '-' and '_'")
        }
        _ = try call("DELETE", "/v1/datasets/\(id)/rentals/\(rentalId)", doing: "end rental \(rentalId) of \(id)")
    }

    /// `GET /v1/datasets/{id}/rentals/{address}`.
    public func rental(id: String, user: Address) throws -> RentalStatus {
        try Self.checkDataset(id)
        return try decode(RentalStatus.self, try call("GET", "/v1/datasets/\(id)/rentals/\(user.checksummed)", doing: "look up \(user)'s rental of \(id)"),
                          doing: "the rental lookup")
    }

    /// `GET /v1/audit?dataset=ID`.
    public func audit(dataset id: String) throws -> AuditLog {
        try Self.checkDataset(id)
        return try decode(AuditLog.self, try call("GET", "/v1/audit?dataset=\(id)", doing: "read the audit log of \(id)"), doing: "the audit log")
    }
}

// The API's answers, nested so that they never clash with the server module's types
// (PrivacyPlane has its own DatasetInfo, VersionInfo) in a file that imports both.
extension PlaneClient {
    /// What `GET /v1/auth/nonce` returns: everything needed to build the EIP-4361 message.
    public struct SignInNonce: Sendable, Equatable, Decodable {
        public init(nonce: String, domain: String, uri: String, chainId: UInt64, statement: String?, expiresAt: Int64) {
            self.nonce = nonce; self.domain = domain; self.uri = uri; self.chainId = chainId; self.statement = statement; self.expiresAt = expiresAt
        }
        public let nonce: String
        public let domain: String
        public let uri: String
        public let chainId: UInt64
        public let statement: String?
        public let expiresAt: Int64
    }

    /// A signed-in session.
    public struct Session: Sendable, Equatable, Decodable {
        public let token: String
        public let address: String
        public let expiresAt: Int64
    }

    /// The operator approval the plane asks for (eth_signTypedData_v4 shape), parsed and
    /// checked: the type is exactly `OperatorApproval` as the ledger defines it.
    public struct ApprovalRequest: Sendable, Equatable {
        public let domain: EIP712Domain
        public let owner: Address
        public let `operator`: Address
        public let expires: UInt64
        public let nonce: UInt64

        /// The EIP-712 digest the owner signs (raw secp256k1, not personal_sign).
        public var digest: [UInt8] {
            OperatorApproval.digest(owner: owner, operator: `operator`, expires: expires, nonce: nonce, domain: domain)
        }
    }

    /// A dataset as the plane reports it.
    public struct DatasetInfo: Sendable, Equatable, Decodable {
        public let id: String
        public let owner: String
        public let policyHash: String?
        public let versions: [VersionInfo]
    }

    /// One version of a dataset.
    public struct VersionInfo: Sendable, Equatable, Decodable {
        public let root: String
        public let files: Int
        public let bytes: Int64
        public let createdAt: Int64?
    }

    /// A rental id as the plane writes it (a JSON number or string), kept as its decimal text.
    public struct RentalID: Sendable, Equatable, Decodable, CustomStringConvertible {
        public let value: String
        public init(_ value: String) { self.value = value }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(UInt64.self) { value = String(n) } else { value = try c.decode(String.self) }
        }
        public var description: String { value }
    }

    public struct Rental: Sendable, Equatable, Decodable {
        public let rentalId: RentalID
        public let user: String
        public let expires: Int64
    }

    public struct RentalStatus: Sendable, Equatable, Decodable {
        public let active: Bool
        public let rentalId: RentalID?
        public let expires: Int64?
    }

    /// The audit log of a dataset: a signed checkpoint and events with inclusion proofs.
    public struct AuditLog: Sendable, Equatable, Decodable {
        public struct Event: Sendable, Equatable, Decodable {
            public let index: Int64
            public let time: Int64
            public let actor: String
            public let kind: String?
            public let event: String?
            public let dataset: String?
            public let payloadHash: String?
            public let leafHash: String
            /// The ledger entry's body (hex), when the plane includes it: the leaf hash's preimage.
            public let entry: String?
            public let proof: [String]
        }
        public let checkpoint: String
        public let events: [Event]
    }
}
