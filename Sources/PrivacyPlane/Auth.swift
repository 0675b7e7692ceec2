// Sign-in (EIP-4361) and bearer tokens, both stateless across replicas: nonces and tokens
// carry their own expiry and a MAC under a KEK-derived key, and a nonce is spent by
// creating a marker object in the shared store with create-if-absent (so a replayed message
// fails on every replica). docs/plane.md §Sign-in has the formats.
import Envelope
import Foundation
import ObjectStore
import Wallet

/// What `GET /v1/auth/nonce` returns: everything a client needs to write the message.
public struct NonceGrant: Codable, Sendable, Equatable {
    public let nonce: String
    public let domain: String
    public let uri: String
    public let chainId: UInt64
    public let statement: String
    public let expiresAt: UInt64
}

/// A signed-in session.
public struct TokenGrant: Codable, Sendable, Equatable {
    public let token: String
    public let address: String
    public let expiresAt: UInt64
}

struct Authenticator: Sendable {
    let keys: PlaneKeys
    let store: any ObjectStore
    let domain: String
    let uri: String
    let chainID: UInt64
    let tokenTTL: UInt64
    let nonceTTL: UInt64
    /// Clock skew allowed on Issued At.
    static let skew: UInt64 = 60

    var statement: String { "Sign in to the cce4long Privacy Plane operated by \(keys.identity.address.checksummed)." }

    // MARK: nonces: <expires, 10 digits><random, 24 hex><MAC, 32 hex>

    func issueNonce(now: UInt64) throws -> NonceGrant {
        let expires = now + nonceTTL
        let body = String(format: "%010llu", expires) + Hex.encode(try Random.bytes(12))
        let mac = Hex.encode(try keys.nonceMAC(Array(("cce4-siwe-nonce-v1|" + body).utf8)).prefix(16))
        return NonceGrant(nonce: body + mac, domain: domain, uri: uri, chainId: chainID, statement: statement, expiresAt: expires)
    }

    /// Checks the nonce was issued by a plane of this deployment and is not expired.
    func checkNonce(_ nonce: String, now: UInt64) throws(PlaneError) -> UInt64 {
        let u = Array(nonce.utf8)
        guard u.count == 66, let expires = UInt64(String(nonce.prefix(10))) else { throw .unauthorized("the sign-in nonce was not issued by this plane; get one from GET /v1/auth/nonce") }
        let body = String(nonce.prefix(34)), mac = Array(u[34...])
        guard let want = try? keys.nonceMAC(Array(("cce4-siwe-nonce-v1|" + body).utf8)).prefix(16) else { throw .internalError("MAC failed") }
        let wantHex = Array(Hex.encode(want).utf8)
        let ok = wantHex.withUnsafeBytes { a in mac.withUnsafeBytes { b in constantTimeEquals(a, b) } }
        guard ok else { throw .unauthorized("the sign-in nonce was not issued by this plane; get one from GET /v1/auth/nonce") }
        guard now < expires else { throw .unauthorized("the sign-in nonce expired; get a new one from GET /v1/auth/nonce and sign again") }
        return expires
    }

    // MARK: login

    func login(message text: String, signature sigText: String, now: UInt64) throws(PlaneError) -> TokenGrant {
        guard text.utf8.count <= 4096 else { throw .badRequest("the sign-in message is longer than 4096 bytes") }
        let msg: SIWEMessage
        do { msg = try SIWEMessage(parsing: text) } catch { throw .badRequest(error.description) }
        let sig: Signature
        do { sig = try Signature(hex: sigText) } catch { throw .badRequest("signature: \(error)") }
        guard msg.domain == domain else { throw .unauthorized("the sign-in message is for \(msg.domain.prefix(100)), not \(domain)") }
        guard msg.scheme == nil || msg.scheme == (uri.hasPrefix("https") ? "https" : "http") else { throw .unauthorized("the sign-in message's scheme does not match this plane") }
        guard msg.uri == uri else { throw .unauthorized("the sign-in message's URI is \(msg.uri.prefix(100)), expected \(uri)") }
        guard msg.chainID == chainID else { throw .unauthorized("the sign-in message is for chain \(msg.chainID), this plane is on chain \(chainID)") }
        guard msg.version == "1" else { throw .unauthorized("unsupported SIWE version \(msg.version.prefix(8))") }
        let nonceExpires = try checkNonce(msg.nonce, now: now)
        let issued = msg.issuedAt.nanoseconds / 1_000_000_000
        guard issued <= Int64(now + Self.skew) else { throw .unauthorized("the sign-in message's Issued At is in the future; check your clock") }
        guard issued + Int64(Self.skew) >= Int64(nonceExpires) - Int64(nonceTTL) else {
            throw .unauthorized("the sign-in message's Issued At is before its nonce was issued")
        }
        do { try msg.verify(signature: sig, at: Int64(now) * 1_000_000_000) } catch {
            throw .unauthorized(error.description)
        }
        // Spend the nonce: the first replica to create the marker wins; a replay finds it.
        do {
            let key = try ObjectKey("_plane/nonces/\(msg.nonce)")
            try store.put(key, Array("{\"address\":\"\(msg.address.checksummed)\",\"at\":\(now)}\n".utf8), ifAbsent: true)
        } catch let e where e.code == .alreadyExists {
            throw .unauthorized("this sign-in message was already used (replay); get a new nonce and sign again")
        } catch {
            throw .unavailable("cannot record the sign-in: \(error)")
        }
        var expires = now + tokenTTL
        if let e = msg.expirationTime { expires = min(expires, UInt64(max(0, e.nanoseconds / 1_000_000_000))) }
        return TokenGrant(token: try makeToken(msg.address, expires: expires), address: msg.address.checksummed, expiresAt: expires)
    }

    // MARK: tokens: cce4pt1.<address hex>.<expires>.<MAC hex>

    func makeToken(_ a: Address, expires: UInt64) throws(PlaneError) -> String {
        let body = "cce4pt1.\(Hex.encode(a.bytes)).\(expires)"
        guard let mac = try? keys.tokenMAC(Array(body.utf8)) else { throw .internalError("MAC failed") }
        return body + "." + Hex.encode(mac)
    }

    /// The address a bearer token was issued to, if it is genuine and unexpired.
    func verifyToken(_ token: String, now: UInt64) throws(PlaneError) -> Address {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 200, parts.count == 4, parts[0] == "cce4pt1", parts[1].utf8.count == 40, let addr = Hex.decode(String(parts[1])),
              let expires = UInt64(parts[2]), parts[3].utf8.count == 64 else {
            throw .unauthorized("malformed bearer token; sign in again")
        }
        let body = "cce4pt1.\(parts[1]).\(parts[2])"
        guard let mac = try? keys.tokenMAC(Array(body.utf8)) else { throw .internalError("MAC failed") }
        let want = Array(Hex.encode(mac).utf8), got = Array(parts[3].utf8)
        let ok = want.withUnsafeBytes { a in got.withUnsafeBytes { b in constantTimeEquals(a, b) } }
        guard ok else { throw .unauthorized("invalid bearer token; sign in again") }
        guard now < expires else { throw .unauthorized("the bearer token expired; sign in again") }
        return Address(bytes: addr)
    }
}
