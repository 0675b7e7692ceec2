// EIP-4361 Sign-In with Ethereum: the message's ABNF, parsed strictly (field order, EIP-55
// address, RFC 3986 authority and URIs, RFC 3339 times with real calendar dates), rendered
// canonically, and verified (signature, time window, domain binding, nonce).

/// Why a Sign-In with Ethereum message was refused.
public enum SIWEError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text does not follow EIP-4361 (line `line`, 1-based, says what was expected).
    case malformed(line: Int, String)
    /// The message's Expiration Time has passed (at or after it).
    case expired
    /// The message's Not Before time has not come.
    case notYetValid
    /// The message was made for another domain than the one verifying it.
    case domainMismatch(expected: String, got: String)
    /// The message's nonce is not the one the server issued.
    case nonceMismatch
    /// The signature is malformed or was made by another address than the message names.
    case badSignature(String)

    public var description: String {
        switch self {
        case .malformed(let line, let why): return "not a Sign-In with Ethereum message (line \(line)): \(why)"
        case .expired: return "the sign-in message has expired; sign a fresh one"
        case .notYetValid: return "the sign-in message is not valid yet (Not Before is in the future)"
        case .domainMismatch(let e, let g): return "the sign-in message is for \(g), not \(e)"
        case .nonceMismatch: return "the sign-in message's nonce is not the one issued; request a new nonce and sign again"
        case .badSignature(let why): return "the sign-in signature does not verify: \(why)"
        }
    }
}

/// An RFC 3339 timestamp as written, with its instant in nanoseconds since the epoch.
public struct SIWETime: Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let nanoseconds: Int64
    public var description: String { text }

    public init(_ text: String) throws(SIWEError) {
        guard let ns = RFC3339.parse(text) else { throw .malformed(line: 0, "not an RFC 3339 date-time: \(text.prefix(40))") }
        self.text = text
        self.nanoseconds = ns
    }

    public init(unixSeconds: Int64) {
        let (ns, overflow) = unixSeconds.multipliedReportingOverflow(by: 1_000_000_000)
        self.nanoseconds = overflow ? (unixSeconds < 0 ? Int64.min : Int64.max) : ns
        self.text = RFC3339.format(unixSeconds: unixSeconds)
    }
}

/// A parsed EIP-4361 message.
public struct SIWEMessage: Hashable, Sendable {
    public var scheme: String?
    public var domain: String
    public var address: Address
    public var statement: String?
    public var uri: String
    public var version: String
    public var chainID: UInt64
    public var nonce: String
    public var issuedAt: SIWETime
    public var expirationTime: SIWETime?
    public var notBefore: SIWETime?
    public var requestID: String?
    public var resources: [String]

    public init(scheme: String? = nil, domain: String, address: Address, statement: String?, uri: String, version: String = "1",
                chainID: UInt64, nonce: String, issuedAt: SIWETime, expirationTime: SIWETime? = nil, notBefore: SIWETime? = nil,
                requestID: String? = nil, resources: [String] = []) {
        self.scheme = scheme; self.domain = domain; self.address = address; self.statement = statement; self.uri = uri
        self.version = version; self.chainID = chainID; self.nonce = nonce; self.issuedAt = issuedAt
        self.expirationTime = expirationTime; self.notBefore = notBefore; self.requestID = requestID; self.resources = resources
    }

    static let headerSuffix = " wants you to sign in with your Ethereum account:"

    /// Parses and validates every field; refuses anything EIP-4361's ABNF does not allow.
    public init(parsing text: String) throws(SIWEError) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var i = 0
        func fail(_ why: String) -> SIWEError { .malformed(line: i + 1, why) }
        func next() -> String? { i < lines.count ? lines[i] : nil }

        // 1: [scheme "://"] domain " wants you to sign in with your Ethereum account:"
        guard let header = next(), header.hasSuffix(Self.headerSuffix) else { throw fail("expected \"<domain>\(Self.headerSuffix)\"") }
        var origin = String(header.dropLast(Self.headerSuffix.count))
        if let r = origin.range(of: "://") {
            let s = String(origin[..<r.lowerBound])
            guard URIGrammar.isScheme(s) else { throw fail("invalid scheme \(s.prefix(40))") }
            scheme = s
            origin = String(origin[r.upperBound...])
        } else {
            scheme = nil
        }
        guard !origin.isEmpty, URIGrammar.isAuthority(origin) else { throw fail("the domain must be an RFC 3986 authority") }
        domain = origin
        i += 1
        // 2: EIP-55 address
        guard let a = next() else { throw fail("missing address") }
        do { address = try Address(a, requireChecksum: true) } catch { throw fail("the address must be 0x + 40 hex digits with its EIP-55 checksum") }
        i += 1
        // 3: empty; then [statement LF] LF
        guard next() == "" else { throw fail("expected an empty line after the address") }
        i += 1
        guard let s = next() else { throw fail("missing URI") }
        if s.isEmpty {
            statement = nil
            i += 1
        } else {
            guard URIGrammar.isStatement(s) else { throw fail("the statement has characters EIP-4361 does not allow") }
            statement = s
            i += 1
            guard next() == "" else { throw fail("expected an empty line after the statement (a statement is one line)") }
            i += 1
        }
        func field(_ tag: String) throws(SIWEError) -> String {
            guard let l = next(), l.hasPrefix(tag + ": ") else { throw fail("expected \"\(tag): \"") }
            i += 1
            return String(l.dropFirst(tag.count + 2))
        }
        func optionalField(_ tag: String) -> String? {
            guard let l = next(), l.hasPrefix(tag + ": ") else { return nil }
            i += 1
            return String(l.dropFirst(tag.count + 2))
        }
        func time(_ text: String) throws(SIWEError) -> SIWETime {
            guard let ns = RFC3339.parse(text) else { throw SIWEError.malformed(line: i, "not an RFC 3339 date-time: \(text.prefix(40))") }
            return SIWETime(text: text, nanoseconds: ns)
        }
        uri = try field("URI")
        guard URIGrammar.isURI(uri) else { throw SIWEError.malformed(line: i, "the URI is not an RFC 3986 URI") }
        version = try field("Version")
        guard version == "1" else { throw SIWEError.malformed(line: i, "only Version 1 exists") }
        let chain = try field("Chain ID")
        guard !chain.isEmpty, chain.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let c = UInt64(chain) else {
            throw SIWEError.malformed(line: i, "the Chain ID must be a decimal integer")
        }
        chainID = c
        nonce = try field("Nonce")
        guard nonce.utf8.count >= 8, nonce.utf8.allSatisfy({ URIGrammar.isAlnum($0) }) else {
            throw SIWEError.malformed(line: i, "the nonce must be at least 8 letters or digits")
        }
        issuedAt = try time(try field("Issued At"))
        expirationTime = try optionalField("Expiration Time").map { (t: String) throws(SIWEError) -> SIWETime in try time(t) }
        notBefore = try optionalField("Not Before").map { (t: String) throws(SIWEError) -> SIWETime in try time(t) }
        requestID = optionalField("Request ID")
        if let r = requestID, !URIGrammar.isPchars(r) { throw SIWEError.malformed(line: i, "the Request ID has characters RFC 3986 pchar does not allow") }
        resources = []
        if next() == "Resources:" {
            i += 1
            while let l = next(), l.hasPrefix("- ") {
                let u = String(l.dropFirst(2))
                guard URIGrammar.isURI(u) else { throw fail("resource is not an RFC 3986 URI") }
                resources.append(u)
                i += 1
            }
        }
        guard i == lines.count else { throw fail("unexpected line (fields out of order, or text after the message)") }
    }

    /// The canonical text (what the wallet signs).
    public var text: String {
        var out = (scheme.map { $0 + "://" } ?? "") + domain + Self.headerSuffix + "\n" + address.checksummed + "\n\n"
        if let statement { out += statement + "\n" }
        out += "\nURI: \(uri)\nVersion: \(version)\nChain ID: \(chainID)\nNonce: \(nonce)\nIssued At: \(issuedAt.text)"
        if let e = expirationTime { out += "\nExpiration Time: \(e.text)" }
        if let n = notBefore { out += "\nNot Before: \(n.text)" }
        if let r = requestID { out += "\nRequest ID: \(r)" }
        if !resources.isEmpty { out += "\nResources:" + resources.map { "\n- \($0)" }.joined() }
        return out
    }

    /// Verifies `signature` (EIP-191 personal_sign over `text`) was made by `address`, and that
    /// the message is valid at `time` (Unix nanoseconds), for `domain` and `nonce` when given.
    public func verify(signature: Signature, at time: Int64, domain expectedDomain: String? = nil, nonce expectedNonce: String? = nil) throws(SIWEError) {
        if let e = expirationTime, time >= e.nanoseconds { throw .expired }
        if let n = notBefore, time < n.nanoseconds { throw .notYetValid }
        if let d = expectedDomain, d != domain { throw .domainMismatch(expected: d, got: domain) }
        if let n = expectedNonce, n != nonce { throw .nonceMismatch }
        let signer: Address
        do { signer = try PersonalMessage.signer(of: Array(text.utf8), signature: signature) } catch { throw .badSignature(error.description) }
        guard signer == address else { throw .badSignature("signed by \(signer), not \(address)") }
    }
}

extension SIWETime {
    init(text: String, nanoseconds: Int64) { self.text = text; self.nanoseconds = nanoseconds }
}

/// RFC 3986 character classes and the few productions EIP-4361 uses.
enum URIGrammar {
    static func isAlpha(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
    static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    static func isAlnum(_ c: UInt8) -> Bool { isAlpha(c) || isDigit(c) }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102) }
    static func isUnreserved(_ c: UInt8) -> Bool { isAlnum(c) || c == 45 || c == 46 || c == 95 || c == 126 }
    static func isSubDelim(_ c: UInt8) -> Bool { Array("!$&'()*+,;=".utf8).contains(c) }
    static func isGenDelim(_ c: UInt8) -> Bool { Array(":/?#[]@".utf8).contains(c) }

    /// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    static func isScheme(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard let f = u.first, isAlpha(f) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == 43 || $0 == 45 || $0 == 46 }
    }

    /// Each byte is allowed by `ok` or starts a well-formed percent-encoding.
    static func allowed(_ u: ArraySlice<UInt8>, _ ok: (UInt8) -> Bool) -> Bool {
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == 37 {
                guard i + 2 < u.endIndex, isHex(u[i + 1]), isHex(u[i + 2]) else { return false }
                i += 3
            } else {
                guard ok(u[i]) else { return false }
                i += 1
            }
        }
        return true
    }

    /// authority = [ userinfo "@" ] host [ ":" port ]
    static func isAuthority(_ s: String) -> Bool {
        var u = Array(s.utf8)[...]
        if let at = u.lastIndex(of: 64) {
            guard allowed(u[..<at], { isUnreserved($0) || isSubDelim($0) || $0 == 58 }) else { return false }
            u = u[(at + 1)...]
        }
        if u.first == 91 { // IP-literal
            guard let close = u.firstIndex(of: 93) else { return false }
            let inner = u[(u.startIndex + 1)..<close]
            guard !inner.isEmpty, inner.allSatisfy({ isHex($0) || $0 == 58 || $0 == 46 }), inner.contains(58) else { return false }
            let rest = u[(close + 1)...]
            if rest.isEmpty { return true }
            return rest.first == 58 && rest.dropFirst().allSatisfy(isDigit)
        }
        var host = u
        if let colon = u.lastIndex(of: 58) {
            guard u[(colon + 1)...].allSatisfy(isDigit) else { return false }
            host = u[..<colon]
        }
        return allowed(host, { isUnreserved($0) || isSubDelim($0) })
    }

    /// URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ], checked character by character
    /// and, where hier-part starts with "//", with its authority checked as above.
    static func isURI(_ s: String) -> Bool {
        guard let colon = s.firstIndex(of: ":"), isScheme(String(s[..<colon])) else { return false }
        let rest = String(s[s.index(after: colon)...])
        let u = Array(rest.utf8)[...]
        let pchar: (UInt8) -> Bool = { isUnreserved($0) || isSubDelim($0) || $0 == 58 || $0 == 64 || $0 == 47 || $0 == 63 }
        var body = u, fragment: ArraySlice<UInt8> = []
        if let hash = u.firstIndex(of: 35) { body = u[..<hash]; fragment = u[(hash + 1)...] }
        guard allowed(fragment, pchar) else { return false }
        if body.starts(with: [47, 47]) {
            let a = body.dropFirst(2)
            let end = a.firstIndex(where: { $0 == 47 || $0 == 63 }) ?? a.endIndex
            guard isAuthority(String(decoding: a[..<end], as: UTF8.self)) else { return false }
            return allowed(a[end...], pchar)
        }
        return allowed(body, pchar)
    }

    /// *pchar (Request ID)
    static func isPchars(_ s: String) -> Bool {
        allowed(Array(s.utf8)[...], { isUnreserved($0) || isSubDelim($0) || $0 == 58 || $0 == 64 })
    }

    /// statement = *( reserved / unreserved / " " ), and not empty
    static func isStatement(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { isUnreserved($0) || isSubDelim($0) || isGenDelim($0) || $0 == 32 }
    }
}

/// RFC 3339 date-time, with real calendar dates (no 31 February).
enum RFC3339 {
    static func parse(_ text: String) -> Int64? {
        let u = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= u.count else { return nil }
            var v = 0
            for c in u[from..<(from + count)] { guard URIGrammar.isDigit(c) else { return nil }; v = v * 10 + Int(c - 48) }
            return v
        }
        guard u.count >= 20, let y = num(0, 4), u[4] == 45, let mo = num(5, 2), u[7] == 45, let d = num(8, 2),
              u[10] == 84 || u[10] == 116, let h = num(11, 2), u[13] == 58, let mi = num(14, 2), u[16] == 58, let s = num(17, 2)
        else { return nil }
        guard (1...12).contains(mo), d >= 1, d <= daysIn(month: mo, year: y), h <= 23, mi <= 59, s <= 60 else { return nil }
        var i = 19
        var nanos: Int64 = 0
        if u[i] == 46 {
            i += 1
            let start = i
            while i < u.count, URIGrammar.isDigit(u[i]) { i += 1 }
            guard i > start else { return nil }
            var scale: Int64 = 100_000_000
            for c in u[start..<min(i, start + 9)] { nanos += Int64(c - 48) * scale; scale /= 10 }
        }
        guard i < u.count else { return nil }
        var offset = 0
        if u[i] == 90 || u[i] == 122 {
            i += 1
        } else if u[i] == 43 || u[i] == 45 {
            guard let oh = num(i + 1, 2), u.count > i + 3, u[i + 3] == 58, let om = num(i + 4, 2), oh <= 23, om <= 59 else { return nil }
            offset = (oh * 60 + om) * 60 * (u[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == u.count else { return nil }
        let days = daysFromCivil(y, mo, d)
        let secs = Int64(days) * 86400 + Int64(h * 3600 + mi * 60 + min(s, 59)) - Int64(offset)
        // Nanoseconds since 1970 fit in Int64 for 1678–2262; times outside saturate, which keeps
        // every comparison with a present-day time right.
        let (ns, overflow) = secs.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return secs < 0 ? Int64.min : Int64.max }
        return ns.addingReportingOverflow(nanos).overflow ? Int64.max : ns + nanos
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func format(unixSeconds: Int64) -> String {
        let z = Int(unixSeconds / 86400) + 719468 - (unixSeconds < 0 && unixSeconds % 86400 != 0 ? 1 : 0)
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        var sod = Int(unixSeconds % 86400); if sod < 0 { sod += 86400 }
        func p(_ v: Int, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        return "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(sod / 3600, 2)):\(p(sod / 60 % 60, 2)):\(p(sod % 60, 2))Z"
    }
}
