// The OpenSSL types the verifiers need, each owned by one Swift class that frees it in
// deinit, and a small DER reader for the extensions OpenSSL leaves opaque.
internal import COpenSSL
import Envelope
import Foundation

/// A parsed X.509 certificate (owns a `cce4_x509`, freed with cce4_x509_free).
final class Certificate {
    let handle: OpaquePointer
    /// The exact DER bytes it was parsed from.
    let der: [UInt8]

    /// cce4_x509_from_der: exactly one DER certificate, nothing trailing.
    init?(der: [UInt8]) {
        guard let h = der.withUnsafeBufferPointer({ cce4_x509_from_der($0.baseAddress, $0.count) }) else { return nil }
        handle = h
        self.der = der
    }

    deinit { cce4_x509_free(handle) }

    /// The subject's common name (cce4_x509_common_name), or nil.
    var subjectCN: String? { commonName(issuer: 0) }
    /// The issuer's common name, or nil.
    var issuerCN: String? { commonName(issuer: 1) }

    private func commonName(issuer: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 256)
        guard cce4_x509_common_name(handle, issuer, &buf, buf.count) >= 0 else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// SHA-256 of the DER encoding (the certificate's fingerprint).
    var fingerprint: [UInt8] { SHA256Digest.hash(der).bytes }

    /// The extension's contents (the DER inside its OCTET STRING), or nil when absent.
    func extensionValue(_ oid: String) -> [UInt8]? {
        var len = 0
        guard cce4_x509_extension(handle, oid, nil, 0, &len) == 1 else { return nil }
        var out = [UInt8](repeating: 0, count: len)
        let rc = out.withUnsafeMutableBufferPointer { cce4_x509_extension(handle, oid, $0.baseAddress, len, &len) }
        return rc == 1 ? out : nil
    }

    /// cce4_x509_ecdsa_verify: an ECDSA signature (big-endian r, s) by this certificate's key.
    func verifyECDSA(hashBits: Int32, message: ArraySlice<UInt8>, r: ArraySlice<UInt8>, s: ArraySlice<UInt8>) -> Bool {
        guard r.count == s.count else { return false }
        let r = Array(r), s = Array(s), m = Array(message)
        return cce4_x509_ecdsa_verify(handle, hashBits, m, m.count, r, s, r.count) == 1
    }
}

/// A parsed CRL (owns a `cce4_crl`, freed with cce4_crl_free).
final class RevocationList {
    let handle: OpaquePointer
    /// Accepts DER, or PEM ("X509 CRL"), or the hex text that PCS v3 returned.
    init?(bytes: [UInt8]) {
        var der = bytes
        if let pem = PEM.blocks(bytes, label: "X509 CRL").first { der = pem }
        else if let text = String(bytes: bytes, encoding: .ascii), let hex = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)) { der = hex }
        guard let h = der.withUnsafeBufferPointer({ cce4_crl_from_der($0.baseAddress, $0.count) }) else { return nil }
        handle = h
    }
    deinit { cce4_crl_free(handle) }
}

enum CRLMode: Int32 { case none = 0, leaf = 1, all = 2 }

/// The outcome of cce4_x509_verify_chain, with OpenSSL's reason when it failed.
enum ChainResult: Equatable {
    case valid
    case invalid(code: Int32, reason: String)

    /// True for the X509_V_ERR codes about CRLs and revocation (x509_vfy.h).
    var isRevocation: Bool {
        guard case .invalid(let code, _) = self else { return false }
        // 3 UNABLE_TO_GET_CRL, 6 UNABLE_TO_DECRYPT_CRL_SIGNATURE, 8 CRL_SIGNATURE_FAILURE,
        // 11 CRL_NOT_YET_VALID, 12 CRL_HAS_EXPIRED, 15/16 bad CRL dates, 23 CERT_REVOKED,
        // 33 UNABLE_TO_GET_CRL_ISSUER, 35 KEYUSAGE_NO_CRL_SIGN, 36 UNHANDLED_CRITICAL_CRL_EXTENSION,
        // 44 DIFFERENT_CRL_SCOPE, 54 CRL_PATH_VALIDATION_ERROR.
        return [3, 6, 8, 11, 12, 15, 16, 23, 33, 35, 36, 44, 54].contains(code)
    }
}

/// cce4_x509_verify_chain: `leaf` through `intermediates` to the one anchor `root` at `time`.
func verifyChain(leaf: Certificate, intermediates: [Certificate], root: Certificate,
                 crls: [RevocationList], crlMode: CRLMode, at time: Date) -> ChainResult {
    // A time OpenSSL cannot take (not finite, beyond Int64 seconds) verifies nothing.
    let seconds = time.timeIntervalSince1970.rounded(.down)
    guard seconds.isFinite, let when = Int64(exactly: seconds) else { return .invalid(code: 9, reason: "verification time out of range") }
    var error: Int32 = 0
    let untrusted: [OpaquePointer?] = intermediates.map { Optional($0.handle) }
    let crlHandles: [OpaquePointer?] = crls.map { Optional($0.handle) }
    let rc = untrusted.withUnsafeBufferPointer { u in
        crlHandles.withUnsafeBufferPointer { c in
            cce4_x509_verify_chain(leaf.handle, u.baseAddress, u.count, root.handle, c.baseAddress, c.count,
                                   crlMode.rawValue, when, &error)
        }
    }
    withExtendedLifetime((intermediates, crls)) {}
    if rc == 1 { return .valid }
    var buf = [CChar](repeating: 0, count: 160)
    cce4_x509_error_string(error, &buf, buf.count)
    let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return .invalid(code: error, reason: rc < 0 ? "internal error in chain verification" : text)
}

/// cce4_ecdsa_verify_raw: an ECDSA signature by a raw public point X‖Y.
func verifyECDSA(point: ArraySlice<UInt8>, hashBits: Int32, message: ArraySlice<UInt8>, r: ArraySlice<UInt8>, s: ArraySlice<UInt8>) -> Bool {
    guard r.count == s.count else { return false }
    let p = Array(point), m = Array(message), r = Array(r), s = Array(s)
    return cce4_ecdsa_verify_raw(p, p.count, hashBits, m, m.count, r, s, r.count) == 1
}

/// PEM blocks (RFC 7468) of one label, base64-decoded; text outside the blocks is ignored.
enum PEM {
    static func blocks(_ bytes: some Collection<UInt8>, label: String) -> [[UInt8]] {
        guard let text = String(bytes: Array(bytes.prefix { $0 != 0 } ), encoding: .utf8) else { return [] }
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        var out: [[UInt8]] = []
        var rest = Substring(text)
        while let b = rest.range(of: begin) {
            guard let e = rest.range(of: end, range: b.upperBound..<rest.endIndex) else { break }
            let body = rest[b.upperBound..<e.lowerBound].filter { !$0.isWhitespace }
            if let data = Data(base64Encoded: String(body)) { out.append(Array(data)) } else { out.append([]) }
            rest = rest[e.upperBound...]
        }
        return out
    }

    /// The certificates of a PEM bundle, in order; nil if any block does not parse.
    static func certificates(_ bytes: some Collection<UInt8>) -> [Certificate]? {
        let ders = blocks(bytes, label: "CERTIFICATE")
        guard !ders.isEmpty else { return nil }
        var certs: [Certificate] = []
        for d in ders {
            guard let c = Certificate(der: d) else { return nil }
            certs.append(c)
        }
        return certs
    }
}

/// A minimal DER reader: enough for Intel's SGX extension and AMD's VCEK extensions.
struct DER {
    let tag: UInt8
    let content: ArraySlice<UInt8>

    /// Reads one TLV from the front of `bytes`; returns it and the rest. Nil if malformed.
    static func read(_ bytes: ArraySlice<UInt8>) -> (DER, ArraySlice<UInt8>)? {
        var i = bytes.startIndex
        guard bytes.count >= 2 else { return nil }
        let tag = bytes[i]; i += 1
        var len = Int(bytes[i]); i += 1
        if len & 0x80 != 0 {
            let n = len & 0x7f
            guard n >= 1, n <= 3, bytes.endIndex - i >= n else { return nil }
            len = 0
            for _ in 0..<n { len = len << 8 | Int(bytes[i]); i += 1 }
        }
        guard bytes.endIndex - i >= len else { return nil }
        return (DER(tag: tag, content: bytes[i..<(i + len)]), bytes[(i + len)...])
    }

    /// The elements of a constructed value; nil if any is malformed.
    var children: [DER]? {
        var out: [DER] = []
        var rest = content
        while !rest.isEmpty {
            guard let (node, r) = DER.read(rest) else { return nil }
            out.append(node)
            rest = r
        }
        return out
    }

    /// A non-negative INTEGER (or ENUMERATED) of at most 8 bytes.
    var unsigned: UInt64? {
        guard tag == 0x02 || tag == 0x0a, !content.isEmpty, content.count <= 9, content.first! & 0x80 == 0 else { return nil }
        var v: UInt64 = 0
        for b in content { v = v << 8 | UInt64(b) }
        return content.count == 9 && content.first! != 0 ? nil : v
    }

    /// The dotted text of an OBJECT IDENTIFIER.
    var oid: String? {
        guard tag == 0x06, let first = content.first else { return nil }
        var parts = [String(first / 40), String(first % 40)]
        var v: UInt64 = 0
        for b in content.dropFirst() {
            v = v << 7 | UInt64(b & 0x7f)
            if b & 0x80 == 0 { parts.append(String(v)); v = 0 }
        }
        return parts.joined(separator: ".")
    }
}
